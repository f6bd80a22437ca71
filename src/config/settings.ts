import * as v from 'valibot'
import { parseDuration } from './duration.ts'

/** One setting: a flag, an environment variable `CAIRN_<NAME>` and a `config.json` key, in that order of precedence. */
export interface Setting {
  /** the flag name without dashes; also the config.json key */
  name: string
  kind: 'string' | 'boolean'
  multiple?: boolean
  /** what the value looks like in --help (DIR, MULTIADDR, DURATION) */
  value?: string
  description: string
  /** validates and converts the raw value (a string from a flag or the environment, any JSON from config.json) */
  schema: v.GenericSchema<unknown, unknown>
  default?: unknown
  /** false for settings that config.json cannot hold (such as data, which locates config.json) */
  inFile?: boolean
  /**
   * another setting this one's value may not exceed, and why (said when it does): a value over the other's is
   * refused when both were set; when one of them is its default, it takes the other's value
   */
  atMost?: { setting: string; why: string }
}

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/

/** A `HOST:PORT` pair, port 0 meaning any free port. */
export const HostPortSchema = v.pipe(
  v.string(),
  v.regex(HOST_PORT, 'Expected HOST:PORT, such as 127.0.0.1:7400'),
  v.transform((s) => {
    const m = HOST_PORT.exec(s)!
    return { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) }
  }),
  v.check((hp) => hp.port <= 65535, 'The port must be between 0 and 65535')
)

/** @returns a setting's raw value as an operator wrote it: a string quoted, JSON as JSON */
export function shown(raw: unknown): string {
  return JSON.stringify(raw) ?? String(raw)
}

/**
 * The longest duration a timer takes: Bun and Node clamp a timer of more than 2^31-1 ms (24.8 days) to 1 ms,
 * so a setting that arms a timer above it would fire in a loop.
 */
export const TIMER_MAX = '24d'

/** The longest duration any setting takes: a century, far within a safe integer of milliseconds. */
const DURATION_MAX = '36500d'

/** What a duration looks like, in errors. */
const DURATION_FORM = 'expected a number and a unit, such as 30s, 15m, 24h, 7d'

/**
 * A duration, as text with a unit: `500ms`, `5s`, `10m`, `48h`, `7d`; within `min` and `max` (durations
 * too) when given. A bare number is refused wherever it comes from, config.json included: `48` is as
 * likely hours as milliseconds.
 *
 * @returns the schema, whose output is milliseconds; its errors quote the value and the expected form
 */
export function durationSchema(bounds: { min?: string; max?: string } = {}) {
  const min = bounds.min == null ? 0 : parseDuration(bounds.min)!
  const max = parseDuration(bounds.max ?? DURATION_MAX)!
  return v.pipe(
    v.unknown(),
    v.rawTransform(({ dataset, addIssue, NEVER }) => {
      const raw = dataset.value
      const ms = typeof raw === 'string' ? parseDuration(raw) : undefined
      if (ms == null) {
        addIssue({ message: `${shown(raw)} is not a duration: ${DURATION_FORM}` })
        return NEVER
      }
      if (ms < min) {
        addIssue({ message: `${shown(raw)} is too short: expected at least ${bounds.min}` })
        return NEVER
      }
      if (ms > max) {
        addIssue({ message: `${shown(raw)} is too long: expected at most ${bounds.max ?? DURATION_MAX}` })
        return NEVER
      }
      return ms
    })
  )
}

/** A duration of at least 0ms (see durationSchema). */
export const DurationSchema = durationSchema()

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, kb: 1000, kib: 1024, mb: 1e6, mib: 1024 ** 2, gb: 1e9, gib: 1024 ** 3 }

/** @returns bytes of a size such as `262144`, `256KiB` or `1MiB` (a JSON number is bytes), or undefined when it is not one */
function parseSize(raw: unknown): number | undefined {
  if (typeof raw === 'number') return Number.isSafeInteger(raw) ? raw : undefined
  if (typeof raw !== 'string') return undefined
  const m = /^(\d+)\s*([a-zA-Z]*)$/.exec(raw.trim())
  const unit = m == null ? undefined : SIZE_UNITS[m[2].toLowerCase()]
  return unit == null ? undefined : Number(m![1]) * unit
}

/** The largest size any setting takes, far within a safe integer of bytes. */
const SIZE_MAX = '1000000GiB'

/**
 * A size in bytes: `262144`, `256KiB`, `1MiB` (units B, KB, KiB, MB, MiB, GB, GiB), or a JSON number of
 * bytes; within `min` and `max` (sizes too, default at least 1 byte).
 *
 * @returns the schema, whose output is bytes; its errors quote the value and the expected form
 */
export function sizeSchema(bounds: { min?: string; max?: string } = {}) {
  const min = parseSize(bounds.min ?? '1')!
  const max = parseSize(bounds.max ?? SIZE_MAX)!
  return v.pipe(
    v.unknown(),
    v.rawTransform(({ dataset, addIssue, NEVER }) => {
      const raw = dataset.value
      const n = parseSize(raw)
      if (n == null) {
        addIssue({ message: `${shown(raw)} is not a size: expected a number of bytes with an optional unit, such as 262144, 256KiB or 1MiB` })
        return NEVER
      }
      if (n < min) {
        addIssue({ message: `${shown(raw)} is too small: expected at least ${bounds.min ?? '1 byte'}` })
        return NEVER
      }
      if (n > max) {
        addIssue({ message: `${shown(raw)} is too large: expected at most ${bounds.max ?? SIZE_MAX}` })
        return NEVER
      }
      return n
    })
  )
}

/**
 * A whole number, from a flag's text or JSON, within `min` (default 0) and `max`.
 *
 * @returns the schema; its errors quote the value and the expected form
 */
export function intSchema(bounds: { min?: number; max?: number } = {}) {
  const min = bounds.min ?? 0
  const max = bounds.max ?? Number.MAX_SAFE_INTEGER
  const form = `expected a whole number ${max === Number.MAX_SAFE_INTEGER ? `of at least ${min}` : `from ${min} to ${max}`}`
  return v.pipe(
    v.unknown(),
    v.rawTransform(({ dataset, addIssue, NEVER }) => {
      const raw = dataset.value
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\s*-?\d+\s*$/.test(raw) ? Number(raw) : NaN
      if (!Number.isSafeInteger(n)) {
        addIssue({ message: `${shown(raw)} is not a whole number: ${form}` })
        return NEVER
      }
      if (n < min || n > max) {
        addIssue({ message: `${shown(raw)} is ${n < min ? 'too small' : 'too large'}: ${form}` })
        return NEVER
      }
      return n
    })
  )
}

/** A whole number of at least 0 (see intSchema). */
export const IntSchema = intSchema()

/** A boolean, from a flag's presence, `true`/`false` text or JSON. */
export const BoolSchema = v.pipe(
  v.union([v.boolean(), v.picklist(['true', 'false', '1', '0', 'yes', 'no'])], 'Expected true or false'),
  v.transform((x) => x === true || x === 'true' || x === '1' || x === 'yes')
)

/** A list of strings; from the environment it is comma-separated. */
export const StringListSchema = v.pipe(
  v.union([v.array(v.string()), v.string()], 'Expected a list of strings'),
  v.transform((x) =>
    typeof x === 'string'
      ? x
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== '')
      : x
  )
)

/** @returns the environment variable that stands for a setting: `data` → `CAIRN_DATA` */
export function envName(setting: Pick<Setting, 'name'>): string {
  return `CAIRN_${setting.name.toUpperCase().replaceAll('-', '_')}`
}
