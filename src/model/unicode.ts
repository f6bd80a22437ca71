/**
 * Text a node keeps must be well-formed Unicode: a lone UTF-16 surrogate (U+D800 to U+DFFF without its pair)
 * cannot be encoded as UTF-8, so SQLite TEXT stores it as U+FFFD, SQLite's JSON functions read its escape as
 * other bytes, and strict JSON readers (of other languages) refuse it. JSON can still spell one, as an
 * escape (`"\ud800"`): these find it.
 */

/** Matches a lone surrogate (with the `u` flag, a well-formed pair is one code point, not `Cs`). */
const LONE_SURROGATE = /\p{Cs}/u

/** Matches JSON text that may spell a surrogate as an escape: text without it holds no lone surrogate. */
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/

/** What a lone surrogate is, for messages. */
export const LONE_SURROGATE_TEXT = 'a lone UTF-16 surrogate (\\ud800 to \\udfff without its pair), which cannot be stored as it is'

/**
 * @returns whether JSON text may hold a lone surrogate once parsed: false is sure (a surrogate in JSON text
 * that decoded as UTF-8 can only be an escape), true asks for loneSurrogateIn on the parsed value
 */
export function mayHoldLoneSurrogate(jsonText: string): boolean {
  return SURROGATE_ESCAPE.test(jsonText)
}

/**
 * Finds a lone surrogate in a parsed JSON value, in its strings and its objects' member names. Iterative, so a
 * deeply nested value cannot overflow the stack.
 *
 * @returns where the first one found is (a dot path such as `order.lines.1`, '' for the value itself, and for
 * a member name the path of its object), or undefined when there is none
 */
export function loneSurrogateIn(value: unknown): { path: string; memberName: boolean } | undefined {
  const stack: Array<[unknown, string]> = [[value, '']]
  while (stack.length > 0) {
    const [v, path] = stack.pop()!
    if (typeof v === 'string') {
      if (LONE_SURROGATE.test(v)) return { path, memberName: false }
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], path === '' ? String(i) : `${path}.${i}`])
    } else if (v !== null && typeof v === 'object') {
      const keys = Object.keys(v)
      for (const k of keys) if (LONE_SURROGATE.test(k)) return { path, memberName: true }
      for (let i = keys.length - 1; i >= 0; i--) stack.push([(v as Record<string, unknown>)[keys[i]], path === '' ? keys[i] : `${path}.${keys[i]}`])
    }
  }
  return undefined
}
