import { defineVerb } from '../verb.ts'
import { SETTINGS } from '../../config/catalog.ts'
import { OPTIONS } from '../options.ts'
import { UsageError } from '../../errors.ts'
import { dataPaths } from '../../datadir/layout.ts'
import { assertDataDir } from '../../datadir/load.ts'
import { databaseError } from '../../datadir/problems.ts'
import { ReadOnlyDatabase } from '../../store/readOnly.ts'
import { describePlugin, loadPlugins, type PluginInfo } from '../../plugins/load.ts'
import { askNode, callNode, nodeAnswerError } from '../client.ts'
import type { StatusDocument } from '../../node/status.ts'
import { jsonSchemaOf } from '../../plugins/schemas.ts'
import { requestEffectReplay, requestReplay } from '../../plugins/replay.ts'
import type { EffectState, ReplaySelect } from '../../store/pluginState.ts'
import { requestRebuild } from '../../plugins/rebuild.ts'
import { parseDuration } from '../../config/duration.ts'
import { BUILTIN_PLUGINS } from '../../../plugins/mod.ts'
import { openNodeStore } from './bus.ts'
import { readRunInfo } from '../../datadir/runInfo.ts'
import { mergePackageJson, scaffoldPlugin, type PackageJson, type Scaffold } from '../../plugins/scaffold.ts'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'

/** @returns the plugin directories to read: the ones given, else the ones the node running on the data directory loaded */
function pluginDirs(values: Record<string, unknown>): string[] {
  const given = values.plugins as string[]
  if (given.length > 0) return given
  return readRunInfo(values.data as string)?.plugins ?? []
}

/** @returns what the node running on the data directory loaded (from its status), unless --plugins names directories to read instead */
async function runningNodePlugins(values: Record<string, unknown>): Promise<PluginInfo[] | undefined> {
  if ((values.plugins as string[]).length > 0 || readRunInfo(values.data as string) == null) return undefined
  return await loadedPlugins(values.data as string)
}

/** @returns what the node running on the data directory loaded, from its status */
async function loadedPlugins(dir: string): Promise<PluginInfo[]> {
  return (await askNode<StatusDocument>(dir, 'GET', '/status', "Cannot read the node's status")).loaded_plugins
}

/**
 * @param err where to say that the running node's plugins cannot be told (its status unreadable: in another
 * container, stopping, hung), in which case the request is recorded as for a stopped node
 * @returns the plugins the node running on the data directory loaded (from its status), or undefined when no node
 * runs there (a stopped node's next start may load any plugin) or its status cannot be read
 */
async function loadedByRunningNode(dir: string, err: (line: string) => void): Promise<string[] | undefined> {
  if (readRunInfo(dir) == null) return undefined
  try {
    return (await loadedPlugins(dir)).map((p) => p.name)
  } catch (e) {
    err(`cannot tell which plugins the node on ${dir} loaded (${(e as Error).message}); recorded all the same: a node that loads the plugin runs it (a running one within a second)`)
    return undefined
  }
}

/**
 * @returns the refusal of a request for a plugin that the running node has not loaded (removed from its --plugins,
 * or renamed): nothing would run it, and the request would wait unseen until a start loads that plugin again
 */
function notLoadedError(dir: string, plugin: string, loaded: readonly string[], what: string): UsageError {
  return new UsageError(
    `The node running on ${dir} has not loaded plugin ${plugin} (it runs ${loaded.join(', ') || 'none'}): nothing would ${what}. Restart it with ${plugin} among its --plugins first; a removed plugin's tables and state stay in cairn.db (see docs/plugins.md, "Removing or renaming a plugin")`
  )
}

/** How `cairn plugins` describes a rebuild under way. */
const REBUILD_STATES = {
  asked: 'asked (the node starts it within a second)',
  running: 'running (the old tables serve until the new ones replace them)'
}

export const pluginsVerb = defineVerb({
  name: 'plugins',
  summary: "list the loaded plugins (the running node's, or from --plugins), write a new one (plugins new NAME --type TYPE), or rebuild one's tables (plugins rebuild NAME)",
  usage: '[--data DIR] [--plugins DIR]... [--json] | new NAME --type TYPE [--dir DIR] | rebuild NAME [--data DIR]',
  settings: [SETTINGS.data, SETTINGS.plugins, OPTIONS.json, OPTIONS.type, OPTIONS.dir],
  positionals: true,
  details:
    "Without --plugins it lists what the node running on the data directory loaded (from its status), else the built-in plugins. plugins new writes NAME.ts (a plugin handling TYPE), NAME.test.ts (its test, run with bun test), tsconfig.json and package.json into --dir; it never overwrites a file, and adds to an existing package.json only what it lacks. plugins rebuild NAME re-applies every retained event of the plugin's types into fresh tables (a backfill after a new column, or after the plugin changed its state keys): the running node starts within a second (it is refused when that node has not loaded NAME), a stopped one at its next start that loads NAME. It builds them in rebuild-NAME.db in the data directory, on a second connection, while the node goes on serving and applying new events to the old tables, then swaps them in with one short transaction of cairn.db (its length grows with the plugin's tables, not with the events re-applied); a stop keeps the request and the old tables, and it forgets a snapshot the plugin's state was loaded from. The list (and cairn status) marks a plugin whose rebuild is asked or running.",
  async run({ values, positionals, out, err }) {
    const [sub, ...rest] = positionals
    if (sub === 'new') return scaffoldVerb(values, rest, out)
    if (sub === 'rebuild') return await rebuildVerb(values, rest, out, err)
    if (sub != null) throw new UsageError(`Unknown cairn plugins command ${sub}: expected new or rebuild (see cairn plugins --help)`)
    const list = (await runningNodePlugins(values)) ?? (await loadPlugins(BUILTIN_PLUGINS, pluginDirs(values))).map(describePlugin)
    if (values.json === true) out(JSON.stringify(list))
    else
      for (const p of list)
        out(
          `${p.name}${p.version != null ? ` ${p.version}` : ''}  (${p.source})\n  types:  ${Object.entries(p.types)
            .map(([t, vs]) => `${t} v${vs.join(',')}`)
            .join('  ')}\n  tables: ${p.tables.join(', ') || '-'}${p.rebuild == null ? '' : `\n  rebuild: ${REBUILD_STATES[p.rebuild]}`}`
        )
    return 0
  }
})

/** `cairn plugins new NAME --type TYPE [--dir DIR]`: writes a plugin, its test and their settings. */
function scaffoldVerb(values: Record<string, unknown>, args: string[], out: (line: string) => void): number {
  const [name] = args
  if (name == null || args.length > 1) throw new UsageError('cairn plugins new needs one NAME, such as cairn plugins new document-sharing --type document.shared')
  const type = values.type as string | undefined
  if (type == null) throw new UsageError(`cairn plugins new needs --type TYPE, the event type the plugin handles, such as --type document.shared`)
  let scaffold: Scaffold
  try {
    scaffold = scaffoldPlugin(name, type)
  } catch (err) {
    if ((err as Error).name === 'ValidationError') throw new UsageError((err as Error).message)
    throw err
  }
  const dir = resolve((values.dir as string | undefined) ?? '.')
  const taken = [`${name}.ts`, `${name}.test.ts`].filter((f) => existsSync(join(dir, f)))
  if (taken.length > 0) throw new UsageError(`Refusing to overwrite ${taken.map((f) => join(dir, f)).join(' and ')}: choose another NAME or --dir`)
  mkdirSync(dir, { recursive: true })
  for (const [file, text] of Object.entries(scaffold.files)) {
    const path = join(dir, file)
    if (existsSync(path)) {
      out(`kept ${path}`)
      continue
    }
    writeFileSync(path, text)
    out(`wrote ${path}`)
  }
  const pkgPath = join(dir, 'package.json')
  let existing: PackageJson = {}
  if (existsSync(pkgPath)) {
    try {
      existing = JSON.parse(readFileSync(pkgPath, 'utf8')) as PackageJson
    } catch (err) {
      throw new UsageError(`Cannot read ${pkgPath}: ${(err as Error).message}`)
    }
  }
  writeFileSync(pkgPath, `${JSON.stringify(mergePackageJson(existing, scaffold.packageJson), null, 2)}\n`)
  out(`${Object.keys(existing).length > 0 ? 'updated' : 'wrote'} ${pkgPath}`)
  out(`next: npm install (the @cairn/plugin tarball, bun, typescript), then bun test, npx tsc --noEmit, and cairn run --plugins ${dir}`)
  return 0
}

/** `cairn plugins rebuild NAME`: asks the node to re-apply a plugin's retained history into fresh tables. */
async function rebuildVerb(values: Record<string, unknown>, args: string[], out: (line: string) => void, err: (line: string) => void): Promise<number> {
  const [name] = args
  if (name == null || args.length > 1) throw new UsageError('cairn plugins rebuild needs one plugin NAME, such as cairn plugins rebuild workspace-access')
  const store = await openNodeStore(values.data as string)
  try {
    if (!store.pluginState.known(name)) {
      throw new UsageError(`No plugin ${name} has run on this node (known: ${store.pluginState.knownPlugins().join(', ') || 'none'}); start the node with it first`)
    }
    const loaded = await loadedByRunningNode(values.data as string, err)
    if (loaded != null && !loaded.includes(name)) throw notLoadedError(values.data as string, name, loaded, 'rebuild its tables')
    requestRebuild(store, name)
    const when =
      loaded != null
        ? 'starts within a second on the running node (cairn plugins shows it running until the swap; the node logs plugin_rebuilt)'
        : readRunInfo(values.data as string) != null
          ? `when the node that runs on this directory loads ${name}: within a second if it has, else at its next start that does`
          : `at the next start that loads ${name}`
    out(JSON.stringify({ rebuild: name, when }))
  } finally {
    store.close()
  }
  return 0
}

export const schemaVerb = defineVerb({
  name: 'schema',
  summary: "print an event type's payload JSON Schema, from the plugin that declares it (the running node's, or from --plugins)",
  usage: 'TYPE [--data DIR] [--version N] [--plugins DIR]...',
  settings: [SETTINGS.data, SETTINGS.plugins, OPTIONS.version],
  positionals: true,
  async run({ values, positionals, out }) {
    const type = positionals[0]
    if (type == null || positionals.length > 1) throw new UsageError('cairn schema needs one TYPE, such as cairn schema workspace.invited (see cairn schema --help)')
    const loaded = await loadPlugins(BUILTIN_PLUGINS, pluginDirs(values))
    out(
      JSON.stringify(
        jsonSchemaOf(
          loaded.map((l) => l.plugin),
          type,
          values.version as number | undefined
        ),
        null,
        2
      )
    )
    return 0
  }
})

export const sqlVerb = defineVerb({
  name: 'sql',
  summary: "run a read-only SQL query against the node's database (writes are refused)",
  usage: '[--data DIR] [--json] "SELECT …"',
  settings: [SETTINGS.data, OPTIONS.json],
  positionals: true,
  details:
    'The database is opened read-only, and only one read-only statement runs (SELECT, WITH, VALUES, EXPLAIN or PRAGMA): INSERT, UPDATE, DELETE, CREATE, VACUUM, ATTACH and the like are refused before anything runs. With --json it prints an array of row objects; otherwise a tab-separated table with a header.',
  async run({ values, positionals, out }) {
    const sql = positionals.join(' ').trim()
    if (sql === '') throw new UsageError('cairn sql needs a query, such as cairn sql "SELECT type, count(*) FROM events GROUP BY type"')
    assertDataDir(values.data as string)
    const path = dataPaths(values.data as string).database
    const db = await ReadOnlyDatabase.open(path).catch((err: unknown) => {
      throw databaseError(path, err)
    })
    try {
      let rows: Array<Record<string, unknown>>
      try {
        rows = db.query(sql)
      } catch (err) {
        const message = (err as Error).message
        if ((err as Error).name === 'ValidationError') throw new UsageError(message)
        throw new UsageError(/readonly|read-only|query_only/i.test(message) ? `Refused: cairn sql is read-only (${message})` : `SQL error: ${message}`)
      }
      if (values.json === true) {
        out(JSON.stringify(rows, (_k, v) => (typeof v === 'bigint' ? Number(v) : v instanceof Uint8Array ? Buffer.from(v).toString('base64') : v)))
      } else if (rows.length > 0) {
        const cols = Object.keys(rows[0])
        out(cols.join('\t'))
        for (const r of rows) out(cols.map((c) => String(r[c] ?? '')).join('\t'))
      }
    } finally {
      db.close()
    }
    return 0
  }
})

export const deadVerb = defineVerb({
  name: 'dead',
  summary: 'list dead letters: events a plugin could not apply after every retry',
  details:
    'Each line names the event by its event_id and its producer (the last 8 characters, and its seq; --json gives the whole peer id): replay one with cairn replay EVENT_ID --producer PEER_ID. With --effects, it lists the effects given up instead (they threw PermanentError): run one again with cairn replay --effects EVENT_ID --producer PEER_ID.',
  usage: '[--data DIR] [--effects] [--json]',
  settings: [SETTINGS.data, OPTIONS.effects, OPTIONS.json],
  async run({ values, out }) {
    const store = await openNodeStore(values.data as string, { onlyReads: true })
    try {
      if (values.effects === true) {
        const given = store.pluginState.givenUpEffects()
        if (values.json === true) out(JSON.stringify(given))
        else if (given.length === 0) out('no effects given up')
        else for (const f of given) out(`${f.event_id}  ${f.type}  ${f.producer.slice(-8)}#${f.seq}  plugin ${f.plugin}  ${f.attempts} attempt(s)  ${f.gave_up_at}  ${f.error}`)
        return 0
      }
      const dead = store.pluginState.deadLetters()
      if (values.json === true) out(JSON.stringify(dead))
      else if (dead.length === 0) out('no dead letters')
      else for (const d of dead) out(`${d.event_id}  ${d.type}  ${d.producer.slice(-8)}#${d.seq}  plugin ${d.plugin}  ${d.attempts} attempt(s)  ${d.dead_at}  ${d.error}`)
    } finally {
      store.close()
    }
    return 0
  }
})

/** @returns why no effect of an event can be replayed: each of its effects' state, or that it has none */
function noEffectToReplay(effects: readonly EffectState[], loaded: readonly string[] | undefined): string {
  if (effects.length === 0) return 'no plugin queued an effect for it'
  return effects
    .map((f) =>
      loaded != null && !loaded.includes(f.plugin)
        ? `plugin ${f.plugin}, whose effect it is, is not loaded by the running node`
        : `plugin ${f.plugin}'s effect ${f.done ? 'ran' : f.attempts > 0 ? `is retrying (${f.attempts} attempt(s) failed)` : 'is due'}`
    )
    .join(', ')
}

/** The start of an ISO 8601 timestamp (a date, optionally a time): what --since takes besides a duration. */
const ISO_DATE = /^\d{4}-\d{2}-\d{2}([T ]|$)/

export const replayVerb = defineVerb({
  name: 'replay',
  summary: 'run dead-lettered or held events through their plugins again (never applying one twice), or given-up effects once more',
  usage: '[--data DIR] [--effects] (EVENT_ID [--producer PEER_ID] | --dead | --type TYPE [--since TIME]) [--plugin NAME]',
  settings: [SETTINGS.data, OPTIONS.effects, OPTIONS.dead, OPTIONS.type, OPTIONS.since, OPTIONS.producer, OPTIONS.plugin],
  positionals: true,
  details:
    "The running node picks the request up within a second; a stopped node at its next start. Only a plugin a node loads runs its requests: on a running node, --plugin NAME is refused when it has not loaded NAME, and without --plugin the plugins it has not loaded (removed from --plugins, or renamed) are left out, with a line on stderr saying whose. TIME is an ISO timestamp or a duration back from now (24h). An event is its producer's event_id: EVENT_ID alone names every producer's event with that id, --producer only that producer's (see cairn dead for the producers). With --effects, it runs again the effects given up (they threw PermanentError; cairn dead --effects lists them) of the events it selects, --dead meaning every one: each runs once more, retried with backoff if it fails and given up again if it throws PermanentError; an effect not given up is left as it is. --plugin NAME keeps only that plugin's. It prints {\"queued\": N}: the (plugin, event) pairs queued, or with --effects the effects made due.",
  async run({ values, positionals, out, err }) {
    const eventId = positionals[0]
    const producer = values.producer as string | undefined
    const plugin = values.plugin as string | undefined
    const effects = values.effects === true
    const modes = [eventId != null, values.dead === true, values.type != null].filter(Boolean).length
    if (modes !== 1) throw new UsageError(`cairn replay${effects ? ' --effects' : ''} needs one of EVENT_ID, --dead or --type TYPE (see cairn replay --help)`)
    if (producer != null && eventId == null) throw new UsageError('cairn replay --producer goes with an EVENT_ID (see cairn replay --help)')
    // --since narrows a --type only: with --dead (every one) or an EVENT_ID it would be dropped without a word.
    if (values.since != null && values.type == null) throw new UsageError('cairn replay --since goes with --type TYPE (see cairn replay --help)')
    let since: number | undefined
    if (values.since != null) {
      const text = values.since as string
      // Date.parse alone takes far more than ISO 8601 ('5' and '-5' are years): only a text that starts as an ISO date is given to it.
      since = parseDuration(text) != null ? Date.now() - parseDuration(text)! : ISO_DATE.test(text) ? Date.parse(text) : NaN
      if (Number.isNaN(since)) throw new UsageError(`Invalid --since ${text}: expected an ISO timestamp or a duration such as 24h`)
    }
    const store = await openNodeStore(values.data as string)
    try {
      const of = producer != null ? ` of ${producer}` : ''
      if (eventId != null && store.events.byId(eventId, producer) == null) {
        throw new UsageError(`No event ${eventId}${of} in this node's events table`)
      }
      if (plugin != null && !store.pluginState.known(plugin)) {
        throw new UsageError(`No plugin ${plugin} has run on this node (cairn plugins lists the loaded ones)`)
      }
      const loaded = await loadedByRunningNode(values.data as string, err)
      if (plugin != null && loaded != null && !loaded.includes(plugin)) throw notLoadedError(values.data as string, plugin, loaded, `replay into it${effects ? ' or run its effects' : ''}`)
      const select = { eventId, producer, dead: values.dead === true, type: values.type as string | undefined, since, plugin }
      // On a running node, only the plugins it loaded: a request for another would wait unseen until a start loads it again.
      const plugins = plugin != null || loaded == null ? [plugin] : loaded.filter((p) => store.pluginState.known(p))
      const leftOut = plugin != null || loaded == null ? [] : store.pluginState.knownPlugins().filter((p) => !loaded.includes(p))
      const request = (each: (select: ReplaySelect) => number): number => plugins.reduce((n, p) => n + each({ ...select, plugin: p }), 0)
      if (effects) {
        const n = request((s) => requestEffectReplay(store, s))
        const waiting = leftOut.filter((p) => store.pluginState.givenUpEffectsCount({ ...select, plugin: p }) > 0)
        if (waiting.length > 0)
          err(`left out the given-up effects of ${waiting.join(', ')}: the running node has not loaded ${waiting.length > 1 ? 'them' : 'it'} (see docs/plugins.md, "Removing or renaming a plugin")`)
        if (n === 0 && eventId != null) {
          const why = noEffectToReplay(store.pluginState.effectsOf(eventId, producer, plugin), loaded)
          throw new UsageError(`No effect of event ${eventId}${of}${plugin != null ? ` for plugin ${plugin}` : ''} is given up: ${why} (cairn dead --effects lists those given up)`)
        }
        out(JSON.stringify({ queued: n }))
        return 0
      }
      const n = request((s) => requestReplay(store, s))
      const waiting = leftOut.filter((p) => store.pluginState.replayCandidates({ ...select, plugin: p }).length > 0)
      if (waiting.length > 0)
        err(
          `left out the dead letters and held events of ${waiting.join(', ')}: the running node has not loaded ${waiting.length > 1 ? 'them' : 'it'} (see docs/plugins.md, "Removing or renaming a plugin")`
        )
      out(JSON.stringify({ queued: n }))
    } finally {
      store.close()
    }
    return 0
  }
})

export const snapshotVerb = defineVerb({
  name: 'snapshot',
  summary: "write a signed snapshot of plugins' tables into this node's outbox, for nodes that join after history was pruned",
  usage: '[--data DIR] [--plugin NAME]',
  settings: [SETTINGS.data, OPTIONS.plugin],
  details:
    'Needs the running node: the snapshot goes into its outbox tree as snapshots/<plugin>.json, signed with its key, with the per-producer seqs its tables reflect. Without --plugin, every plugin that did not opt out (snapshot: false). Nodes load it when they miss history and trust this node (--snapshot-from).',
  async run({ values, out }) {
    const res = await callNode(values.data as string, 'POST', '/v1/snapshots', { plugin: values.plugin })
    if (res.status !== 200) throw nodeAnswerError(res)
    out(JSON.stringify(res.body))
    return 0
  }
})
