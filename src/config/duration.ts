const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/**
 * Parses a duration such as `500ms`, `5s`, `10m`, `48h` or `7d`.
 *
 * @returns milliseconds, or undefined when the text is not a duration
 * @example
 * ```ts
 * parseDuration('48h') // 172800000
 * ```
 */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text.trim())
  return m == null ? undefined : Math.round(Number(m[1]) * UNITS[m[2]])
}
