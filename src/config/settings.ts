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

/** A duration: `500ms`, `5s`, `10m`, `48h`, `7d`, or a number of milliseconds. */
export const DurationSchema = v.pipe(
  v.union([v.string(), v.number()], 'Expected a duration such as 5s, 10m, 48h or 7d'),
  v.transform((x) => (typeof x === 'number' ? x : (parseDuration(x) ?? NaN))),
  v.number(),
  v.check((n) => Number.isFinite(n) && n >= 0, 'Expected a duration such as 5s, 10m, 48h or 7d')
)

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, kb: 1000, kib: 1024, mb: 1e6, mib: 1024 ** 2, gb: 1e9, gib: 1024 ** 3 }

/** A size in bytes: `262144`, `256KiB`, `1MiB`. */
export const SizeSchema = v.pipe(
  v.union([v.string(), v.number()], 'Expected a size such as 256KiB or 1MiB'),
  v.transform((x) => {
    if (typeof x === 'number') return x
    const m = /^(\d+)\s*([a-zA-Z]*)$/.exec(x.trim())
    const unit = m == null ? undefined : SIZE_UNITS[m[2].toLowerCase()]
    return unit == null ? NaN : Number(m![1]) * unit
  }),
  v.number(),
  v.check((n) => Number.isInteger(n) && n > 0, 'Expected a size such as 256KiB or 1MiB')
)

/** A whole number, from a flag's text or JSON. */
export const IntSchema = v.pipe(
  v.union([v.string(), v.number()], 'Expected a whole number'),
  v.transform((x) => (typeof x === 'number' ? x : /^\d+$/.test(x.trim()) ? Number(x) : NaN)),
  v.number(),
  v.check((n) => Number.isSafeInteger(n) && n >= 0, 'Expected a whole number')
)

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
