import { readFileSync } from 'node:fs'
import { open as openFile } from 'node:fs/promises'
import type { CID } from 'multiformats/cid'
import { CarWriter } from '@ipld/car'
import { defineVerb } from '../verb.ts'
import { RUN_SETTINGS, SETTINGS } from '../../config/catalog.ts'
import { loadAccessRules } from '../../config/access.ts'
import { readConfigFile } from '../../config/resolve.ts'
import { silentLog } from '../../log/logger.ts'
import { Membership } from '../../members/membership.ts'
import { CairnEventBus } from '../../node/events.ts'
import { OPTIONS } from '../options.ts'
import { askNode, callNode, followNode, nodeAnswerError } from '../client.ts'
import { UsageError, DataDirError, NodeAnswerError, NotRunningError } from '../../errors.ts'
import { issueLine } from '../../model/issues.ts'
import type { KeptAfterRemoval } from '../../model/members.ts'
import { assertDataDir, loadIdentity, openDataDirStore } from '../../datadir/load.ts'
import { dataPaths } from '../../datadir/layout.ts'
import { readRunInfo } from '../../datadir/runInfo.ts'
import { openBlockReader, type SqliteBlockstore } from '../../store/blockstore.ts'
import { rowToEnvelope, type EventRow } from '../../store/events.ts'
import { busDirectory, busRoot } from '../../unixfs/busRoot.ts'
import { readTrees, walkDag } from '../../unixfs/walk.ts'
import type { Store } from '../../store/store.ts'
import type { GapKind } from '../../store/gaps.ts'
import { gapRangeText, recordedGaps, type StatusDocument, type StoredStatus, storedStatus } from '../../node/status.ts'
import { versionText } from '../../version.ts'

/**
 * Opens a data directory's database for a CLI verb (see openDataDirStore).
 *
 * @param options.onlyReads the verb never writes the database: with no node running, one this process cannot
 * write (a read-only file system) is read read-only
 */
export async function openNodeStore(dir: string, options: { onlyReads?: boolean } = {}): Promise<Store> {
  assertDataDir(dir)
  return await openDataDirStore(dir, options)
}

export const publishVerb = defineVerb({
  name: 'publish',
  summary: 'publish one event through the running node; prints {event_id, seq, cid, replayed}',
  usage: '[--data DIR] --type TYPE --payload JSON [--id KEY] [--actor ACTOR] [--version N]  |  [--data DIR] --batch FILE',
  settings: [
    SETTINGS.data,
    OPTIONS.type,
    OPTIONS.payload,
    OPTIONS.id,
    OPTIONS.actor,
    // A publish without a version is version 1 of its type, whatever newer versions plugins read (docs/plugins.md).
    { ...OPTIONS.version, description: "the payload's schema version (default 1, whatever newer versions local plugins read)" },
    OPTIONS['correlation-id'],
    OPTIONS['causation-id'],
    OPTIONS.batch
  ],
  details:
    'With --batch, prints one {event_id, seq, cid, replayed} line per event, in order. A batch that the node refuses (a bad event, named by its line) stops there: the batches before it are published, nothing after it is.',
  async run({ values, out }) {
    if (values.batch != null) {
      if (values.type != null || values.payload != null) throw new UsageError('cairn publish takes either --batch FILE or --type and --payload, not both')
      return await publishBatches(values.data as string, values.batch as string, out)
    }
    if (values.type == null) throw new UsageError('cairn publish needs --type TYPE (see cairn publish --help)')
    if (values.payload == null) throw new UsageError('cairn publish needs --payload JSON (see cairn publish --help)')
    const text = values.payload === '-' ? readFileSync(0, 'utf8') : (values.payload as string)
    let payload: unknown
    try {
      payload = JSON.parse(text)
    } catch (err) {
      throw new UsageError(`Invalid --payload: not JSON: ${(err as Error).message}`)
    }
    const body = {
      type: values.type,
      payload,
      event_id: values.id,
      actor: values.actor,
      version: values.version,
      correlation_id: values['correlation-id'],
      causation_id: values['causation-id']
    }
    const res = await callNode(values.data as string, 'POST', '/v1/events', body)
    if (res.status !== 200 && res.status !== 201) throw nodeAnswerError(res)
    out(JSON.stringify(res.body))
    return 0
  }
})

/** Requests per batch from `cairn publish --batch` (below the default --max-batch of 5000). */
const CLI_BATCH = 1000

async function publishBatches(data: string, file: string, out: (line: string) => void): Promise<number> {
  let text: string
  try {
    text = file === '-' ? readFileSync(0, 'utf8') : readFileSync(file, 'utf8')
  } catch (err) {
    throw new UsageError(`Cannot read --batch ${file}: ${(err as Error).message}`)
  }
  const requests: Array<{ line: number; body: unknown }> = []
  for (const [i, line] of text.split('\n').entries()) {
    if (line.trim() === '') continue
    try {
      requests.push({ line: i + 1, body: JSON.parse(line) })
    } catch (err) {
      throw new UsageError(`Invalid --batch ${file}, line ${i + 1}: not JSON: ${(err as Error).message}; nothing was published`)
    }
  }
  if (requests.length === 0) throw new UsageError(`--batch ${file} holds no events (one JSON request per line)`)
  // A key twice in the file would be a replay or a conflict in a later request: refused before any is sent.
  const firstLine = new Map<unknown, number>()
  for (const r of requests) {
    const key = (r.body as { event_id?: unknown } | null)?.event_id
    if (typeof key !== 'string') continue
    const first = firstLine.get(key)
    if (first != null) throw new UsageError(`Invalid --batch ${file}: line ${r.line}.event_id: repeats the idempotency key of line ${first}; nothing was published`)
    firstLine.set(key, r.line)
  }
  // Requests within the node's limits by count and by bytes (1,000 events of 1.1 KiB are over 1 MiB).
  const limits = await askNode<{ max_batch: number; max_body_bytes: number }>(data, 'GET', '/v1/limits', "Cannot read the node's limits")
  const chunks: Array<typeof requests> = [[]]
  let bytes = 2
  for (const r of requests) {
    const size = new TextEncoder().encode(JSON.stringify(r.body)).length + 1
    const last = chunks[chunks.length - 1]
    if (last.length > 0 && (last.length >= Math.min(CLI_BATCH, limits.max_batch) || bytes + size > limits.max_body_bytes)) {
      chunks.push([])
      bytes = 2
    }
    chunks[chunks.length - 1].push(r)
    bytes += size
  }
  for (const [n, chunk] of chunks.entries()) {
    const res = await callNode(
      data,
      'POST',
      '/v1/events',
      chunk.map((r) => r.body)
    )
    if (res.status !== 200 && res.status !== 201) {
      // Name the line, not the index within the request.
      const where = (s: string): string => s.replace(/\[(\d+)\]/g, (_m, i: string) => `line ${chunk[Number(i)]?.line ?? '?'}`)
      const issues = (res.body?.error?.issues ?? []).map((i) => where(issueLine(i)))
      const done = n === 0 ? 'nothing was published' : `lines before ${chunk[0].line} were published, nothing from there on`
      const refused = nodeAnswerError(res, undefined, { issues: false })
      throw new NodeAnswerError(res.status, `${where(refused.message)}${issues.length > 1 ? '\n  ' + issues.join('\n  ') : ''}\n(${done})`)
    }
    for (const r of res.body as unknown[]) out(JSON.stringify(r))
  }
  return 0
}

/** Events `cairn events` lists without --limit (and without --json, which then lists them all). */
const DEFAULT_EVENTS_LIMIT = 1000
/** Rows read at a time when `cairn events --json` lists every event. */
const EVENTS_PAGE = 1000

export const eventsVerb = defineVerb({
  name: 'events',
  summary: 'list the events this node holds, in arrival order (works while the node runs)',
  usage: '[--data DIR] [--type TYPE] [--producer PEER_ID] [--after CURSOR] [--limit N] [--json] [--follow]',
  settings: [SETTINGS.data, OPTIONS.type, OPTIONS.producer, OPTIONS.after, OPTIONS.limit, OPTIONS.json, OPTIONS.follow],
  details:
    'With --json, one envelope per line, plus its local "cursor" and file "cid". With --follow it then streams new events from the running node (the same stream as GET /v1/stream) until interrupted.',
  async run({ values, out, err }) {
    const print = (r: EventRow): void => {
      if (values.producer != null && r.producer !== values.producer) return
      if (values.json === true) out(JSON.stringify({ ...rowToEnvelope(r), cursor: r.cursor, cid: r.cid }))
      else out(`${String(r.cursor).padStart(6)}  ${r.occurred_at}  ${r.producer.slice(-8)}#${r.seq}  ${r.type} v${r.version}  ${r.event_id}  ${r.payload}`)
    }
    let last = (values.after as number | undefined) ?? 0
    const limit = values.limit as number | undefined
    // With --json and no --limit a script gets every event; otherwise the listing stops at the limit and says so
    // (with --follow the stream goes on from there, so nothing is cut).
    const everything = limit == null && values.json === true
    const pageSize = everything ? EVENTS_PAGE : (limit ?? DEFAULT_EVENTS_LIMIT)
    const store = await openNodeStore(values.data as string, { onlyReads: true })
    try {
      for (;;) {
        const rows = store.events.list({
          types: values.type == null ? undefined : [values.type as string],
          producer: values.producer as string | undefined,
          after: last,
          limit: pageSize + 1
        })
        for (const r of rows.slice(0, pageSize)) {
          print(r)
          last = r.cursor
        }
        if (rows.length <= pageSize) break
        if (!everything && values.follow !== true) {
          err(
            `cairn events: stopped at ${pageSize} events (${limit == null ? 'the default ' : ''}--limit); more follow. Continue with --after ${last}, raise --limit, or use --json without --limit for every event.`
          )
          break
        }
      }
    } finally {
      store.close()
    }
    if (values.follow === true) {
      const query = new URLSearchParams({ after: String(last) })
      if (values.type != null) query.set('types', values.type as string)
      await followNode(values.data as string, `/v1/stream?${query.toString()}`, (data) => {
        const e = JSON.parse(data) as EventRow & { payload: unknown }
        print({ ...e, payload: JSON.stringify(e.payload) } as EventRow)
      })
    }
    return 0
  }
})

export const statusVerb = defineVerb({
  name: 'status',
  summary: "show the node's health: peers, members, producers with head, stored and applied seqs and lag, outbox, gaps, quarantine",
  usage: '[--data DIR] [--json]',
  settings: [SETTINGS.data, OPTIONS.json],
  details: 'Against a running node it asks the node; against a stopped one it reads the database (no peers, no uptime).',
  async run({ values, out }) {
    const dir = values.data as string
    let status: StoredStatus & { running: boolean; bus_root: string } & Partial<StatusDocument>
    if (readRunInfo(dir) != null) {
      status = { running: true, ...(await askNode<StatusDocument>(dir, 'GET', '/status', "Cannot read the node's status")) }
    } else {
      const store = await openNodeStore(dir, { onlyReads: true })
      try {
        const members = await storedMembers(dir, store)
        status = { running: false, ...members.withMembership(storedStatus(store)), bus_root: (await busRoot(store.producers.syncedRoots())).toString(), members: members.document() }
      } finally {
        store.close()
      }
    }
    if (values.json === true) {
      out(JSON.stringify(status))
      return 0
    }
    if (status.verdict != null) out(`verdict   ${status.verdict}${(status.reasons ?? []).length > 0 ? ': ' + (status.reasons ?? []).join('; ') : ''}`)
    out(
      `node      ${status.peer_id ?? '(stopped)'}${status.running === true ? `  up ${status.uptime_s}s  version ${versionText({ version: status.version ?? '?', build: status.build })}` : '  not running'}`
    )
    const peers = status.peers ?? []
    if (status.running) out(`peers     ${peers.length}${peers.length > 0 ? '  ' + peers.join(', ') : ''}`)
    const members = status.members
    if (members != null) {
      const who = members.members.map((m) => `${m.name ?? m.peer_id.slice(-8)} (${m.role}${m.self ? ', self' : m.connected ? '' : ', not connected'})`)
      out(
        `members   ${members.source === 'open' ? 'open: every holder of the swarm key may write' : `${who.join(', ')}${members.removed.length > 0 ? `; removed ${members.removed.map((r) => `${r.peer_id.slice(-8)} after seq ${r.last_seq}`).join(', ')}` : ''}`}`
      )
    }
    out(`bus root  ${status.bus_root}`)
    out(`events    ${status.events}`)
    out(`outbox    ${status.outbox.files} files, oldest seq ${status.outbox.oldest_seq ?? '-'}, last seq ${status.outbox.last_seq}, ${status.outbox.compacted_files} compacted`)
    out('producers')
    // stored: fetched with no seq missing (the lag counts from it); applied: also processed by every loaded plugin (a retrying event holds it back).
    // A running node of an older cairn (the binary replaced, the node not restarted yet) reports no applied seq: '-'.
    out('  producer                                              head     stored    applied   lag')
    for (const p of status.producers) {
      out(
        `  ${p.producer.padEnd(52)}  ${String(p.head_seq).padStart(6)}  ${String(p.processed_seq).padStart(9)}  ${String((p.applied_seq as number | undefined) ?? '-').padStart(9)}   ${p.lag_events} events${p.lag_ms > 0 ? `, ${p.lag_ms} ms` : ''}${p.last_error != null ? `  (${p.last_error})` : ''}${keptLine(p)}`
      )
    }
    const hk = status.housekeeping?.last
    out(
      `housekeeping ${hk == null ? 'not run yet' : `${hk.at}: pruned ${hk.pruned_files} files, deleted ${hk.blocks_deleted} blocks (${hk.reclaimed_bytes} bytes)${(hk.remote_dirs_deleted ?? 0) > 0 ? `, forgot ${hk.remote_dirs_deleted} walked directories of pruned days and hours` : ''}${hk.held_back_by.length > 0 ? `, held back by ${hk.held_back_by.join(', ')}` : ''}${hk.kept_for_clock != null ? `, kept ${hk.kept_for_clock.files} for the clock (see the reasons)` : ''}${hk.error != null ? `, failed: ${hk.error}` : ''}`}; reclaimed ${status.housekeeping?.reclaimed_bytes ?? 0} bytes in all`
    )
    const pl = status.plugins
    if (status.loaded_plugins != null)
      out(
        `loaded    ${status.loaded_plugins
          .map(
            (p) =>
              `${p.name}${p.version != null ? ` ${p.version}` : ''} (${Object.entries(p.types)
                .map(([t, vs]) => `${t} v${vs.join(',')}`)
                .join(', ')})${p.rebuild != null ? ` [rebuild ${p.rebuild}]` : ''}`
          )
          .join('; ')}`
      )
    out(
      `plugins   backlog ${pl.backlog}, retrying ${pl.retrying}, dead letters ${pl.dead_letters}${pl.dead_letters > 0 ? ' (cairn dead)' : ''}, held ${pl.held}, effects failing ${pl.effects_failing ?? 0}, given up ${pl.effects_given_up ?? 0}`
    )
    for (const h of pl.held_by ?? []) out(`  held by ${h.plugin}: ${h.count} ${h.type} v${h.version}`)
    const moreGaps = (status.gaps_total ?? status.gaps.length) - status.gaps.length
    out(
      `gaps      ${status.gaps.length === 0 ? 'none' : status.gaps.map((g) => `${g.producer.slice(-8)} seq ${gapRangeText(g)}`).join(', ')}${moreGaps > 0 ? ` and ${moreGaps} more (cairn gaps lists them)` : ''}`
    )
    for (const h of status.history ?? []) {
      const parts = [
        h.history_from_seq > 1 ? `history from seq ${h.history_from_seq} (earlier events were pruned before this node joined)` : '',
        h.compacted_seqs > 0 ? `${h.compacted_seqs} seqs compacted (superseded by newer events)` : ''
      ]
      out(`history   ${h.producer.slice(-8)} ${parts.filter((p) => p !== '').join(', ')}`)
    }
    for (const p of status.plugin_state ?? []) out(`plugin    ${p.plugin}: ${p.state}`)
    out(`quarantine ${status.quarantine.count}${status.quarantine.count > 0 ? '  ' + JSON.stringify(status.quarantine.by_reason) : ''}`)
    if ((status.rejections ?? []).length > 0) {
      out(`rejections ${(status.rejections ?? []).map((r) => `${r.producer.slice(-8)} ${r.reason} x${r.count} (last ${r.last_at})`).join(', ')}`)
    }
    return 0
  }
})

/** @returns what a producer's status line says of the events of a removed member this node holds after its last valid seq */
function keptLine(p: { kept_after_removal?: KeptAfterRemoval | null }): string {
  const k = p.kept_after_removal
  return k == null ? '' : `  (removed: holds ${k.count} event(s) after its last valid seq, seq ${k.from_seq}..${k.to_seq})`
}

/** @returns the membership a stopped node's database and config.json hold (nobody is connected) */
async function storedMembers(dir: string, store: Store): Promise<Membership> {
  const self = (await loadIdentity(dir)).peerId.toString()
  let setting: Map<string, string | undefined> | undefined
  try {
    setting = loadAccessRules(readConfigFile(dir, new Set(RUN_SETTINGS.map((s) => s.name))).members, undefined, dir).members
  } catch {
    // a bad config.json is cairn run's to report; the status shows what the changes say
  }
  const members = new Membership(
    {
      setting,
      publish: async () => {
        throw new NotRunningError(`No node is running on ${dir}`)
      }
    },
    { self, store, events: new CairnEventBus(), log: silentLog }
  )
  members.start()
  members.stop()
  return members
}

/** Where a CAR goes: one per attempt of writeBusCar. */
export interface CarSink {
  write(chunk: Uint8Array): Promise<void>
  close(): Promise<void>
}

/**
 * Writes the bus directory of `store`'s synced roots and every block under it as one CAR into `open()`,
 * reading blocks.db in one snapshot (see readTrees): the node may be running and collecting garbage. A
 * run that finds a block missing because the node collected it starts over, into a new `open()`.
 *
 * @returns the root and how many blocks the CAR has, or the block that is missing
 * @throws Error when a dag-pb block under the root is no directory (a damaged tree)
 */
export async function writeBusCar(store: Store, blocks: SqliteBlockstore, open: () => Promise<CarSink>): Promise<{ root: CID; blocks: number } | { missing: CID }> {
  return await readTrees(
    blocks,
    () => store.producers.syncedRoots(),
    async (roots) => {
      // The directory is built here, not stored: this process does not write to the node's blocks.db.
      const dir = await busDirectory(roots)
      const sink = await open()
      try {
        const { writer, out } = CarWriter.create([dir.cid])
        const piped = (async () => {
          for await (const chunk of out) await sink.write(chunk)
        })()
        // The writer waits for each chunk to be taken: a sink that fails must end that wait.
        const taken = (put: Promise<void>): Promise<void> => Promise.race([put, piped])
        let count = 0
        let missing: CID | undefined
        for (const step of walkDag([dir.cid], (cid) => (cid.equals(dir.cid) ? dir.bytes : blocks.getSync(cid)))) {
          if (step.kind === 'missing') {
            missing = step.cid
            break
          }
          // A dag-pb block that is no directory stops the export, as a damaged tree must.
          if (step.kind === 'file' && step.error != null) throw step.error
          await taken(writer.put({ cid: step.cid, bytes: step.bytes! }))
          count++
        }
        await taken(writer.close())
        await piped
        return missing != null ? { missing } : { root: dir.cid, blocks: count }
      } finally {
        await sink.close()
      }
    },
    (r) => !('missing' in r)
  )
}

/** A CarSink that (over)writes the file at `path`. */
async function fileSink(path: string): Promise<CarSink> {
  const file = await openFile(path, 'w')
  return {
    write: async (chunk) => {
      for (let at = 0; at < chunk.length; ) at += (await file.write(chunk, at)).bytesWritten
    },
    close: () => file.close()
  }
}

export const exportVerb = defineVerb({
  name: 'export',
  summary: 'write the bus directory (every producer outbox this node holds) as a CAR file',
  usage: '[--data DIR] --car FILE',
  settings: [SETTINGS.data, OPTIONS.car],
  details:
    'The CAR has one root, the bus directory: <producer peer id>/<yyyy-mm-dd>/<hh>/<seq>-<event_id>.json. Any IPFS tool can read it (ipfs dag import, @ipld/car). The node may be running: the export reads one snapshot of blocks.db.',
  async run({ values, out }) {
    if (values.car == null) throw new UsageError('cairn export needs --car FILE (see cairn export --help)')
    const dir = values.data as string
    const car = values.car as string
    const store = await openNodeStore(dir, { onlyReads: true })
    let blocks: SqliteBlockstore
    try {
      // Read only: the node may be running (writing, or converting the file at its first start).
      blocks = await openBlockReader(dataPaths(dir).blocks)
    } catch (err) {
      store.close()
      throw new DataDirError(`Cannot open ${dataPaths(dir).blocks}: ${(err as Error).message}; run cairn doctor`)
    }
    try {
      const written = await writeBusCar(store, blocks, async () => {
        try {
          return await fileSink(car)
        } catch (err) {
          throw new UsageError(`Cannot write ${car}: ${(err as Error).message}`)
        }
      })
      if ('missing' in written) throw new DataDirError(`Cannot export: block ${written.missing.toString()} is missing from ${dataPaths(dir).blocks}; run cairn doctor`)
      out(JSON.stringify({ root: written.root.toString(), blocks: written.blocks, car }))
    } finally {
      blocks.db.close()
      store.close()
    }
    return 0
  }
})

/** What `cairn gaps` says after a gap that is no alarm. */
const GAP_NOTE: Record<GapKind, string> = {
  lost: '',
  compacted: '  compacted: superseded by newer events this node has',
  horizon: '  history: pruned before this node joined'
}

export const gapsVerb = defineVerb({
  name: 'gaps',
  summary: "list the gaps: ranges of a producer's seqs pruned before this node could fetch them, lost, compacted or before it joined",
  usage: '[--data DIR] [--json]',
  settings: [SETTINGS.data, OPTIONS.json],
  async run({ values, out }) {
    const store = await openNodeStore(values.data as string, { onlyReads: true })
    try {
      const gaps = recordedGaps(store)
      if (values.json === true) out(JSON.stringify(gaps))
      else if (gaps.length === 0) out('no gaps')
      else
        for (const g of gaps) {
          const span = g.to_seq - g.from_seq + 1
          out(`${g.producer}  seq ${g.from_seq}..${g.to_seq}  (${g.missing} events${g.missing < span ? ` missing of ${span}` : ''}, detected ${g.detected_at})${GAP_NOTE[g.kind]}`)
        }
    } finally {
      store.close()
    }
    return 0
  }
})
