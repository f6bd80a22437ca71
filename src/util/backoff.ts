/**
 * @returns the delay before retry number `attempt` (1 for the first retry): `base` doubled per attempt,
 * at most `max`
 * @example
 * ```ts
 * backoff(1, { base: 500, max: 30_000 }) // 500
 * backoff(3, { base: 500, max: 30_000 }) // 2000
 * ```
 */
export function backoff(attempt: number, options: { base: number; max: number }): number {
  return Math.min(options.max, options.base * 2 ** Math.max(0, Math.min(attempt - 1, 30)))
}
