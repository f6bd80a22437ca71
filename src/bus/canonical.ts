/**
 * Canonical JSON: object keys sorted, no insignificant white space, `undefined` members left out.
 * The same envelope always gives the same bytes, hence the same CID on every node.
 *
 * @example
 * ```ts
 * canonicalJson({ b: 1, a: [true, null] }) // '{"a":[true,null],"b":1}'
 * ```
 */
export function canonicalJson (value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('Cannot encode a non-finite number as JSON')
    return JSON.stringify(value) ?? 'null'
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  const keys = Object.keys(value).filter((k) => (value as Record<string, unknown>)[k] !== undefined).sort()
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`
}

/** @returns how deeply `value` nests objects and arrays (a scalar is 0) */
export function jsonDepth (value: unknown): number {
  if (value === null || typeof value !== 'object') return 0
  let max = 0
  for (const v of Object.values(value)) max = Math.max(max, jsonDepth(v))
  return max + 1
}
