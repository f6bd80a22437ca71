import * as v from 'valibot'
import { readFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { ConfigError } from '../errors.ts'
import { formatIssues } from '../model/issues.ts'
import { envName, shown, type Setting } from './settings.ts'

/** Where a setting's value came from when nothing set it. */
const DEFAULT_SOURCE = 'the default'

/** The name of the optional settings file inside the data directory. */
const CONFIG_FILE = 'config.json'

/**
 * Reads `config.json` from a data directory.
 *
 * @param known every setting name a config file may hold
 * @returns its settings, or `{}` when there is no file
 * @throws ConfigError when the file is not JSON, not an object, or names an unknown setting
 */
export function readConfigFile(dir: string, known: ReadonlySet<string>): Record<string, unknown> {
  const path = join(dir, CONFIG_FILE)
  if (!existsSync(path)) return {}
  let parsed: unknown
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'))
  } catch (err) {
    throw new ConfigError(`Cannot read ${path}: ${(err as Error).message}`)
  }
  if (parsed == null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError(`Cannot read ${path}: expected a JSON object of settings, such as {"http": "127.0.0.1:7400"}`)
  }
  for (const key of Object.keys(parsed)) {
    if (!known.has(key)) throw new ConfigError(`Cannot read ${path}: unknown setting "${key}" (see cairn run --help for the settings)`)
  }
  return parsed as Record<string, unknown>
}

/**
 * Resolves settings with the precedence flag, then environment, then config.json, then default.
 *
 * @param flags values from the command line, by setting name
 * @param env the process environment
 * @param file the contents of config.json
 * @returns each setting's validated value, by name
 * @throws ConfigError naming the setting and where its bad value came from; for a value over the setting it may
 * not exceed (`atMost`), both set, naming both, their values and where each came from (when one of the two is its
 * default, that one takes the other's value instead)
 */
export function resolveSettings(
  settings: readonly Setting[],
  flags: Record<string, unknown>,
  env: Record<string, string | undefined>,
  file: Record<string, unknown>,
  fileName = CONFIG_FILE
): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  const given = new Map<string, { raw: unknown; from: string }>()
  for (const s of settings) {
    let raw: unknown
    let from: string
    if (flags[s.name] !== undefined) {
      raw = flags[s.name]
      from = `--${s.name}`
    } else if (env[envName(s)] !== undefined && env[envName(s)] !== '') {
      raw = env[envName(s)]
      from = envName(s)
    } else if (s.inFile !== false && file[s.name] !== undefined) {
      raw = file[s.name]
      from = `"${s.name}" in ${fileName}`
    } else {
      raw = s.default
      from = DEFAULT_SOURCE
    }
    if (raw === undefined) continue
    const r = v.safeParse(s.schema, raw)
    if (!r.success) throw new ConfigError(`Invalid setting ${s.name} (from ${from}): ${formatIssues(r.issues).join('; ')}`)
    out[s.name] = r.output
    given.set(s.name, { raw, from })
  }
  for (const s of settings) {
    const bound = s.atMost
    if (bound == null || !given.has(s.name) || !given.has(bound.setting)) continue
    if ((out[s.name] as number) <= (out[bound.setting] as number)) continue
    const own = given.get(s.name)!
    const other = given.get(bound.setting)!
    // Only a pair the operator set both of conflicts: a default gives way to the value set for the other.
    if (own.from === DEFAULT_SOURCE) {
      out[s.name] = out[bound.setting]
      continue
    }
    if (other.from === DEFAULT_SOURCE) {
      out[bound.setting] = out[s.name]
      continue
    }
    throw new ConfigError(
      `Invalid setting ${s.name} (from ${own.from}): ${shown(own.raw)} is more than ${bound.setting} (${shown(other.raw)}, from ${other.from}): ${bound.why}; lower ${s.name} or raise ${bound.setting} to at least ${shown(own.raw)}`
    )
  }
  return out
}
