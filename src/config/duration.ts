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
export function parseDuration (text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text.trim())
  return m == null ? undefined : Math.round(Number(m[1]) * UNITS[m[2]])
}

/** @returns a short human form of `ms` (`1.5s`, `48h`) */
export function formatDuration (ms: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`
  }
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)}s` : `${ms}ms`
}
