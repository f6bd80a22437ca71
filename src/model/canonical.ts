import { ValidationError } from '../errors.ts'
/**
 * A value already encoded as canonical JSON, taken by `canonicalJson` as it is: a payload is encoded once
 * per publish, then placed into the request hash and the envelope without being walked again.
 */
export class CanonicalText {
  readonly text: string
  /** @param text canonicalJson's output for the value it stands for */
  constructor(text: string) {
    this.text = text
  }
}

/**
 * Canonical JSON: object keys sorted, no insignificant white space, `undefined` members left out.
 * The same envelope always gives the same bytes, hence the same CID on every node.
 *
 * @example
 * ```ts
 * canonicalJson({ b: 1, a: [true, null] }) // '{"a":[true,null],"b":1}'
 * ```
 */
export function canonicalJson(value: unknown): string {
  if (value instanceof CanonicalText) return value.text
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new ValidationError('Cannot encode a non-finite number as JSON')
    return JSON.stringify(value) ?? 'null'
  }
  if (Array.isArray(value)) {
    let out = '['
    for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + canonicalJson(value[i])
    return `${out}]`
  }
  const record = value as Record<string, unknown>
  const keys = Object.keys(record).sort()
  let out = '{'
  let first = true
  for (const k of keys) {
    const member = record[k]
    if (member === undefined) continue
    out += `${first ? '' : ','}${JSON.stringify(k)}:${canonicalJson(member)}`
    first = false
  }
  return `${out}}`
}

/**
 * @returns how deeply `value` nests objects and arrays (a scalar is 0), counting at most to `limit + 1`.
 * Iterative, so hostile input nested a hundred thousand levels deep cannot overflow the stack.
 */
export function jsonDepth(value: unknown, limit = Number.MAX_SAFE_INTEGER): number {
  let max = 0
  const stack: Array<[unknown, number]> = [[value, 0]]
  while (stack.length > 0) {
    const [v, d] = stack.pop()!
    if (v === null || typeof v !== 'object') continue
    if (d + 1 > max) max = d + 1
    if (max > limit) return max
    for (const child of Object.values(v)) stack.push([child, d + 1])
  }
  return max
}
