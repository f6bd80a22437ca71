import { defineVerb } from '../verb.ts'
import { SETTINGS } from '../../config/catalog.ts'
import { OPTIONS } from '../options.ts'
import { UsageError } from '../../errors.ts'
import { dataPaths } from '../../datadir/layout.ts'
import { assertDataDir } from '../../datadir/load.ts'
import { ReadOnlyDatabase } from '../../store/readOnly.ts'
import { describePlugin, loadPlugins } from '../../plugins/load.ts'
import { jsonSchemaOf } from '../../plugins/schemas.ts'
import { requestReplay } from '../../plugins/replay.ts'
import { parseDuration } from '../../config/duration.ts'
import { BUILTIN_PLUGINS } from '../../../plugins/mod.ts'
import { openNodeStore } from './bus.ts'
import { callNode } from '../client.ts'

export const pluginsVerb = defineVerb({
  name: 'plugins',
  summary: 'list the loaded plugins: their event types and versions, and the tables they keep',
  usage: '[--data DIR] [--plugins DIR]... [--json]',
  settings: [SETTINGS.data, SETTINGS.plugins, OPTIONS.json],
  async run({ values, out }) {
    const loaded = await loadPlugins(BUILTIN_PLUGINS, values.plugins as string[])
    const list = loaded.map(describePlugin)
    if (values.json === true) out(JSON.stringify(list))
    else
      for (const p of list)
        out(
          `${p.name}${p.version != null ? ` ${p.version}` : ''}  (${p.source})\n  types:  ${Object.entries(p.types)
            .map(([t, vs]) => `${t} v${vs.join(',')}`)
            .join('  ')}\n  tables: ${p.tables.join(', ') || '-'}`
        )
    return 0
  }
})

export const schemaVerb = defineVerb({
  name: 'schema',
  summary: "print an event type's payload JSON Schema, from the plugin that declares it",
  usage: 'TYPE [--version N] [--plugins DIR]...',
  settings: [SETTINGS.data, SETTINGS.plugins, OPTIONS.version],
  positionals: true,
  async run({ values, positionals, out }) {
    const type = positionals[0]
    if (type == null || positionals.length > 1) throw new UsageError('cairn schema needs one TYPE, such as cairn schema workspace.invited (see cairn schema --help)')
    const loaded = await loadPlugins(BUILTIN_PLUGINS, values.plugins as string[])
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
    const db = await ReadOnlyDatabase.open(dataPaths(values.data as string).database)
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
  details: 'Each line names the event by its event_id and its producer (the last 8 characters, and its seq; --json gives the whole peer id): replay one with cairn replay EVENT_ID --producer PEER_ID.',
  usage: '[--data DIR] [--json]',
  settings: [SETTINGS.data, OPTIONS.json],
  async run({ values, out }) {
    const store = await openNodeStore(values.data as string)
    try {
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

export const replayVerb = defineVerb({
  name: 'replay',
  summary: 'run dead-lettered or held events through their plugins again (never applying one twice)',
  usage: '[--data DIR] (EVENT_ID [--producer PEER_ID] | --dead | --type TYPE [--since TIME])',
  settings: [SETTINGS.data, OPTIONS.dead, OPTIONS.type, OPTIONS.since, OPTIONS.producer],
  positionals: true,
  details:
    "The running node picks the request up within a second; a stopped node at its next start. TIME is an ISO timestamp or a duration back from now (24h). An event is its producer's event_id: EVENT_ID alone names every producer's event with that id, --producer only that producer's (see cairn dead for the producers).",
  async run({ values, positionals, out }) {
    const eventId = positionals[0]
    const producer = values.producer as string | undefined
    const modes = [eventId != null, values.dead === true, values.type != null].filter(Boolean).length
    if (modes !== 1) throw new UsageError('cairn replay needs one of EVENT_ID, --dead or --type TYPE (see cairn replay --help)')
    if (producer != null && eventId == null) throw new UsageError('cairn replay --producer goes with an EVENT_ID (see cairn replay --help)')
    let since: number | undefined
    if (values.since != null) {
      const text = values.since as string
      since = parseDuration(text) != null ? Date.now() - parseDuration(text)! : Date.parse(text)
      if (Number.isNaN(since)) throw new UsageError(`Invalid --since ${text}: expected an ISO timestamp or a duration such as 24h`)
    }
    const store = await openNodeStore(values.data as string)
    try {
      if (eventId != null && store.events.byId(eventId, producer) == null) {
        throw new UsageError(`No event ${eventId}${producer != null ? ` of ${producer}` : ''} in this node's events table`)
      }
      const n = requestReplay(store, { eventId, producer, dead: values.dead === true, type: values.type as string | undefined, since })
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
    if (res.status !== 200) throw new UsageError(res.body?.error ?? `Cannot write the snapshot: HTTP ${res.status}`)
    out(JSON.stringify(res.body))
    return 0
  }
})
