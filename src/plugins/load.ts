import * as v from 'valibot'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { formatIssues } from '../model/issues.ts'
import { EventTypeSchema } from '../model/envelope.ts'
import { isReservedType, RESERVED_PREFIX } from '../model/members.ts'
import { definePlugin, type LoadedPlugin, type Plugin } from './types.ts'
import { PluginLoadError } from '../errors.ts'
import { tablesOf } from './migrate.ts'

const isSchema = (x: unknown): boolean => x != null && typeof x === 'object' && (x as { kind?: string }).kind === 'schema' && typeof (x as { '~run'?: unknown })['~run'] === 'function'
const Schema = v.custom<v.GenericSchema>(isSchema, 'Expected a valibot schema (v.object(...), v.unknown(), ...)')
const Fn = v.custom<(...args: never[]) => unknown>((x) => typeof x === 'function', 'Expected a function')

/** The shape every loaded plugin must have. */
const PluginSchema = v.object({
  name: v.pipe(v.string('Expected a name'), v.regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'Expected a lowercase name of letters, digits, dots, dashes or underscores')),
  version: v.optional(v.string('Expected a version string such as 1.0.0')),
  handles: v.pipe(
    v.record(
      EventTypeSchema,
      v.object({
        version: v.pipe(v.number('Expected a version number'), v.integer(), v.minValue(1)),
        payload: Schema,
        upcast: v.optional(v.record(v.string(), v.object({ payload: Schema, to: Fn })))
      })
    ),
    v.check((h) => Object.keys(h).length > 0, 'Expected at least one event type'),
    v.check((h) => !Object.keys(h).some(isReservedType), `Expected no event type in cairn's reserved namespace ${RESERVED_PREFIX}* (cairn's own membership changes)`)
  ),
  migrations: v.optional(v.array(v.string('Expected SQL text'))),
  apply: Fn,
  effect: v.optional(Fn)
})

/** What a plugin file's default export receives when it is a function: the SDK, so it needs no node_modules. */
const SDK = { v, definePlugin }

/**
 * Checks a plugin's shape.
 *
 * @param source the file (or `built-in`) for error messages
 * @throws PluginLoadError naming the source and the field
 */
function checkPlugin(candidate: unknown, source: string): Plugin {
  const r = v.safeParse(PluginSchema, candidate)
  if (!r.success) {
    const name = (candidate as { name?: unknown } | null)?.name
    throw new PluginLoadError(`Cannot load plugin ${typeof name === 'string' ? `"${name}" ` : ''}from ${source}: ${formatIssues(r.issues).join('; ')}`)
  }
  return candidate as Plugin
}

/**
 * Loads the built-in plugins and every `.js`/`.ts` file in `dirs`.
 *
 * @throws PluginLoadError naming the file: unreadable, broken, wrong shape, or a duplicate name
 */
export async function loadPlugins(builtins: readonly Plugin[], dirs: readonly string[]): Promise<LoadedPlugin[]> {
  const loaded: LoadedPlugin[] = builtins.map((p) => ({ plugin: checkPlugin(p, 'built-in'), source: 'built-in' }))
  for (const dir of dirs) {
    const abs = resolve(dir)
    if (!existsSync(abs) || !statSync(abs).isDirectory()) throw new PluginLoadError(`Cannot load plugins from ${abs}: not a directory`)
    for (const file of readdirSync(abs)
      .filter((f) => /\.(js|mjs|ts)$/.test(f) && !f.endsWith('.d.ts'))
      .sort()) {
      const path = join(abs, file)
      let mod: { default?: unknown }
      try {
        mod = await import(pathToFileURL(path).href)
      } catch (err) {
        throw new PluginLoadError(`Cannot load plugin from ${path}: ${(err as Error).message}`)
      }
      let candidate = mod.default
      if (candidate == null) throw new PluginLoadError(`Cannot load plugin from ${path}: it has no default export (export default definePlugin({...}) or ({ v, definePlugin }) => ...)`)
      if (typeof candidate === 'function') {
        try {
          candidate = await (candidate as (sdk: typeof SDK) => unknown)(SDK)
        } catch (err) {
          throw new PluginLoadError(`Cannot load plugin from ${path}: its factory threw: ${(err as Error).message}`)
        }
      }
      loaded.push({ plugin: checkPlugin(candidate, path), source: path })
    }
  }
  const seen = new Map<string, string>()
  for (const { plugin, source } of loaded) {
    const first = seen.get(plugin.name)
    if (first != null) throw new PluginLoadError(`Cannot load plugin "${plugin.name}" from ${source}: ${first} already loaded a plugin of that name`)
    seen.set(plugin.name, source)
  }
  return loaded
}

/** A loaded plugin as `cairn plugins` shows it. */
export interface PluginInfo {
  name: string
  version?: string
  source: string
  /** per event type, the versions the plugin reads (upcast ones and the current) */
  types: Record<string, number[]>
  /** the tables its migrations create */
  tables: string[]
}

/** @returns a loaded plugin's name, version, source, types with their versions, and tables */
export function describePlugin({ plugin, source }: LoadedPlugin): PluginInfo {
  return {
    name: plugin.name,
    version: plugin.version,
    source,
    types: Object.fromEntries(Object.entries(plugin.handles).map(([t, h]) => [t, [...Object.keys(h.upcast ?? {}).map(Number), h.version].sort((a, b) => a - b)])),
    tables: tablesOf(plugin)
  }
}
