import * as v from 'valibot'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { formatIssues } from '../model/issues.ts'
import { EventTypeSchema } from '../model/envelope.ts'
import { isReservedType, RESERVED_PREFIX } from '../model/members.ts'
import type { LoadedPlugin, Plugin } from './types.ts'
import { thrownText } from './runner.ts'
import * as sdkModule from './mod.ts'
import { SDK, type Sdk } from './mod.ts'
import { provideModule } from '../runtime/sdkModule.ts'
import { PluginLoadError } from '../errors.ts'
import { tablesOf } from './migrate.ts'

const isSchema = (x: unknown): boolean => x != null && typeof x === 'object' && (x as { kind?: string }).kind === 'schema' && typeof (x as { '~run'?: unknown })['~run'] === 'function'
const Schema = v.custom<v.GenericSchema>(isSchema, 'Expected a valibot schema (v.object(...), v.unknown(), ...)')
const Fn = v.custom<(...args: never[]) => unknown>((x) => typeof x === 'function', 'Expected a function')
/** apply, keys and upcasters run inside the event's transaction: an async one would write (or throw) after it ended. */
const SyncFn = v.pipe(
  Fn,
  v.check(
    (f) => !['AsyncFunction', 'AsyncGeneratorFunction'].includes(f.constructor?.name),
    'Expected a synchronous function: it runs inside the transaction that applies the event, and what an async one does after its first await is outside it (put async work in effect)'
  )
)

/** A plugin's name: it names its file, its log lines and its rows in cairn's tables. */
export const PluginNameSchema = v.pipe(v.string('Expected a name'), v.regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'Expected a lowercase name of letters, digits, dots, dashes or underscores'))

/** The shape every loaded plugin must have: a key it does not know is refused, as a misspelling would be. */
const HandlerSchema = v.strictObject(
  {
    version: v.pipe(v.number('Expected a version number'), v.integer(), v.minValue(1)),
    payload: Schema,
    upcast: v.optional(
      v.record(
        v.pipe(v.string(), v.regex(/^[1-9][0-9]*$/, 'Expected an older version number as the key')),
        v.strictObject({ payload: Schema, to: SyncFn }, unknownKey('upcast')),
        'Expected { [oldVersion]: upcaster(oldSchema, (old) => current) }'
      )
    ),
    apply: v.optional(SyncFn),
    effect: v.optional(Fn),
    keys: v.optional(SyncFn)
  },
  unknownKey('handler')
)
/** Why a plugin may not declare a type under `cairn.` (`cairn plugins new` refuses one in the same words). */
export const RESERVED_TYPE_MESSAGE = `Expected no event type in cairn's reserved namespace ${RESERVED_PREFIX}* (cairn's own membership changes)`

const PluginSchema = v.pipe(
  v.strictObject(
    {
      name: PluginNameSchema,
      version: v.optional(v.string('Expected a version string such as 1.0.0')),
      handles: v.pipe(
        v.record(EventTypeSchema, HandlerSchema),
        v.check((h) => Object.keys(h).length > 0, 'Expected at least one event type'),
        v.check((h) => !Object.keys(h).some(isReservedType), RESERVED_TYPE_MESSAGE)
      ),
      migrations: v.optional(v.array(v.string('Expected SQL text'))),
      snapshot: v.optional(v.literal(false, 'Expected false (to opt out of snapshots) or nothing')),
      apply: v.optional(SyncFn),
      effect: v.optional(Fn)
    },
    unknownKey('plugin')
  ),
  v.forward(
    v.check((p) => p.apply != null || Object.values(p.handles).every((h) => h.apply != null), "Expected an apply function for every handled type, or the plugin's own apply"),
    ['handles']
  ),
  v.check((p) => Object.values(p.handles).every((h) => Object.keys(h.upcast ?? {}).every((old) => Number(old) < h.version)), "Expected every upcast version to be older than the handler's version")
)

/** @returns the message for a key the object does not have, such as a misspelled `verison` */
function unknownKey(what: string): (issue: v.StrictObjectIssue) => string {
  return (issue) =>
    issue.expected === 'never' ? `Unknown ${what} key ${JSON.stringify(issue.input)}` : issue.expected === 'Object' ? `Expected a ${what} object` : `Expected the ${what} key ${issue.expected}`
}

/**
 * Checks a plugin's shape.
 *
 * @param source the file (or `built-in`) for error messages
 * @throws PluginLoadError naming the source and the field
 */
export function checkPlugin(candidate: unknown, source: string): Plugin {
  const r = v.safeParse(PluginSchema, candidate)
  if (!r.success) {
    const name = (candidate as { name?: unknown } | null)?.name
    throw new PluginLoadError(`Cannot load plugin ${typeof name === 'string' ? `"${name}" ` : ''}from ${source}: ${formatIssues(r.issues).join('; ')}`)
  }
  return candidate as Plugin
}

/** @returns whether a file in a plugin directory is a plugin: a module, but not a test, a spec or a declaration */
function isPluginFile(file: string): boolean {
  return /\.(js|mjs|ts|mts)$/.test(file) && !/\.d\.m?ts$/.test(file) && !/\.(test|spec)\.[cm]?[jt]s$/.test(file)
}

/** A compiler message as the runtime reports a module that does not build: where, and the line's text. */
interface BuildMessage {
  message: string
  position?: { file: string; line: number; column: number; lineText?: string } | null
}

const isBuildMessage = (x: unknown): x is BuildMessage => x instanceof Object && typeof (x as { message?: unknown }).message === 'string'

/** @returns an import failure as text: each compiler message with its file, line and column, and the line itself */
function importErrorText(err: unknown): string {
  const errors: unknown[] = err instanceof Object && Array.isArray((err as { errors?: unknown }).errors) ? (err as { errors: unknown[] }).errors : [err]
  const lines = errors
    .filter(isBuildMessage)
    .map(({ message, position: at }) => (at == null ? message : `${at.file}:${at.line}:${at.column}: ${message}${at.lineText != null ? `\n    ${at.lineText.trim()}` : ''}`))
  return lines.length > 0 ? lines.join('\n  ') : String(err)
}

let sdkProvided: Promise<void> | undefined

/** Lets plugin files `import { definePlugin, v } from '@cairn/plugin'` without node_modules (once per process). */
function provideSdk(): Promise<void> {
  sdkProvided ??= provideModule('@cairn/plugin', { ...sdkModule })
  return sdkProvided
}

/**
 * Loads the built-in plugins and every `.js`/`.ts` file in `dirs` (not `*.test.*`, `*.spec.*`, `*.d.ts` or
 * folders such as node_modules).
 *
 * @throws PluginLoadError naming the file: unreadable, broken, wrong shape, or a duplicate name
 */
export async function loadPlugins(builtins: readonly Plugin[], dirs: readonly string[]): Promise<LoadedPlugin[]> {
  const loaded: LoadedPlugin[] = builtins.map((p) => ({ plugin: checkPlugin(p, 'built-in'), source: 'built-in' }))
  if (dirs.length > 0) await provideSdk()
  for (const dir of dirs) {
    const abs = resolve(dir)
    if (!existsSync(abs) || !statSync(abs).isDirectory()) throw new PluginLoadError(`Cannot load plugins from ${abs}: not a directory`)
    for (const file of readdirSync(abs).filter(isPluginFile).sort()) {
      const path = join(abs, file)
      let mod: { default?: unknown }
      try {
        mod = await import(pathToFileURL(path).href)
      } catch (err) {
        throw new PluginLoadError(`Cannot load plugin from ${path}: ${importErrorText(err)}`)
      }
      let candidate = mod.default
      if (candidate == null) {
        throw new PluginLoadError(
          `Cannot load plugin from ${path}: it has no default export (export default definePlugin({...}) or ({ v, definePlugin }) => ...); every .js, .mjs, .ts and .mts file directly in ${abs} is loaded as a plugin: put a module the plugins share in a subfolder (such as lib/), which is not searched`
        )
      }
      if (typeof candidate === 'function') {
        try {
          candidate = await (candidate as (sdk: Sdk) => unknown)(SDK)
        } catch (err) {
          throw new PluginLoadError(`Cannot load plugin from ${path}: its factory threw: ${thrownText(err)}`)
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
  /**
   * a rebuild of its tables (`cairn plugins rebuild`): `asked` until the node starts it, `running` while the new
   * tables are built beside the old ones (which serve until the swap); absent when none
   */
  rebuild?: 'asked' | 'running'
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

/**
 * @returns one line per event type whose handlers read different newest versions, naming which plugin
 * holds the newer events: such events wait (held) for that plugin until a version of it that reads them
 */
export function versionDisagreements(plugins: readonly LoadedPlugin[]): string[] {
  const byType = new Map<string, Array<{ name: string; version: number }>>()
  for (const { plugin } of plugins) for (const [type, h] of Object.entries(plugin.handles)) byType.set(type, [...(byType.get(type) ?? []), { name: plugin.name, version: h.version }])
  const lines: string[] = []
  for (const [type, handlers] of byType) {
    const newest = Math.max(...handlers.map((h) => h.version))
    const behind = handlers.filter((h) => h.version < newest)
    if (behind.length === 0) continue
    const ahead = handlers.filter((h) => h.version === newest).map((h) => h.name)
    lines.push(
      `plugins disagree on ${type}: ${ahead.join(', ')} read(s) v${newest}, ${behind.map((h) => `${h.name} only up to v${h.version}`).join(', ')}; ${type} events newer than a plugin's version are held for it (cairn status shows them)`
    )
  }
  return lines
}
