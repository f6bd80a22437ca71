import { closeSync, existsSync, fsyncSync, openSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs'
import { basename, join } from 'node:path'
import { CID } from 'multiformats/cid'
import { uuidv7 } from 'uuidv7'
import type { NodeConfig } from '../config/catalog.ts'
import { DataDirError, UsageError } from '../errors.ts'
import { silentLog } from '../log/logger.ts'
import { Metrics } from '../metrics/metrics.ts'
import { formatMs } from '../model/clockSkew.ts'
import { CanonicalText, canonicalJson } from '../model/canonical.ts'
import type { EventEnvelope } from '../model/envelope.ts'
import { readEventFile } from '../model/eventFile.ts'
import { HybridClock, hlcMs } from '../model/hlc.ts'
import { requestRebuild } from '../plugins/rebuild.ts'
import { outbox } from '../publish/outbox.ts'
import { requestHash } from '../publish/request.ts'
import type { PublishRequest } from '../model/publishRequest.ts'
import type { Store } from '../store/store.ts'
import type { SqliteBlockstore } from '../store/blockstore.ts'
import { CairnEventBus } from './events.ts'
import { openDataDir } from './open.ts'

/** Own files read per query while looking, from the last seq down, for those stamped ahead. */
const PAGE = 256

/**
 * The `meta` key naming the republish file of a withdrawal committed and not yet renamed from its `.partial`: set
 * in the withdrawal's transaction, deleted once the file has its name.
 */
const PENDING_FILE = 'reclock_pending_file'

/** A republish file being written, before its withdrawal commits. */
const PARTIAL = /^withdrawn-\d+-\d+\.ndjson\.partial$/

/** What `cairn reclock` did, or would do with --dry-run. */
export interface ReclockReport {
  dry_run: boolean
  /** the stamp of this node's last head before, and how far ahead of this clock it was (ms) */
  previous_hlc: string | null
  ahead_ms: number
  /** the own events withdrawn: those stamped more than --max-clock-skew ahead of this clock; null when none */
  withdrawn: { count: number; from_seq: number; to_seq: number; first_hlc: string; last_hlc: string } | null
  /** the new head, stamped by this clock; null for a dry run or when there was nothing to do */
  head: { seq: number; hlc: string } | null
  /** the file of publish requests for the withdrawn events other than membership changes (cairn publish --batch FILE); null when none */
  republish_file: string | null
  /**
   * the republish file of an earlier run that stopped after its withdrawal committed and before the file had its
   * name, named now; null when none
   */
  finished_file: string | null
  /** the membership changes among them (cairn.members payloads): an owner makes them again with cairn members */
  membership_changes: Array<{ seq: number; change: unknown }>
  /** the plugins that had applied withdrawn events, whose rebuild is asked for (it runs at the next start) */
  rebuild: string[]
  /** the plugins that had applied withdrawn events, whose rebuild is not asked for because events-retention deleted rows it would need */
  rebuild_not_asked: string[]
  /** the plugins whose own snapshot was dropped from the outbox (it held withdrawn events) */
  snapshots_dropped: string[]
}

/** A file of this node's outbox to withdraw. */
interface Withdrawn {
  seq: number
  envelope: EventEnvelope
  /** the idempotency key it was published under; undefined when none */
  key?: string
  /** the hash of the request that published it; null for an event published before hashes were kept */
  hash: string | null
}

/**
 * `cairn reclock`: for a stopped node whose clock ran ahead and was set right. Its hybrid clock never goes back
 * (HybridClock.resume), so it would go on stamping after its last head, and its peers hold what it stamps until
 * their clocks reach that time. This withdraws its own events stamped more than --max-clock-skew ahead of its clock
 * now (a suffix of its seqs: its stamps only grow) from its outbox and from its own tables, and signs a head stamped
 * by its clock, so that its clock goes on from the last event it keeps.
 *
 * Its peers' rules do not change: they take a head with a later stamp than the one they hold and a seq no lower,
 * whose tree lacks the withdrawn seqs and whose `pruned_plain` covers them. A peer that had not taken those events
 * records a lost gap and goes on; one that had (its own clock was ahead too) keeps them. No seq is used twice and
 * nothing is stamped ahead, so a member with a valid key gains nothing from it that signing its own heads did not
 * give it already.
 *
 * It refuses when other producers' heads put this clock behind theirs (it was set back, not ahead): withdrawing
 * would then throw away events stamped right.
 *
 * @throws DataDirBusyError while a node runs on the directory; UsageError when this clock looks behind; DataDirError
 * when a file to withdraw cannot be read
 */
export async function reclock(config: NodeConfig, options: { dryRun?: boolean; now?: () => number } = {}): Promise<ReclockReport> {
  const now = options.now ?? Date.now
  const opened = await openDataDir(config)
  try {
    const { store, blocks } = opened
    const self = opened.peerId.toString()
    const finished = options.dryRun === true ? undefined : finishPending(store, config.data)
    const wall = now()
    const skew = config.maxClockSkew
    assertClockNotBehind(store, self, wall, skew, config.data)
    const previous = store.producers.get(self)?.head_hlc ?? null
    const ahead = previous == null ? 0 : Math.max(0, (hlcMs(previous) ?? 0) - wall)
    const { files, floor } = stampedAhead(store, blocks, self, wall + skew, config)
    const report: ReclockReport = {
      dry_run: options.dryRun === true,
      previous_hlc: previous,
      ahead_ms: ahead,
      withdrawn: null,
      head: null,
      republish_file: null,
      finished_file: finished ?? null,
      membership_changes: [],
      rebuild: [],
      rebuild_not_asked: [],
      snapshots_dropped: []
    }
    if (files.length === 0 && ahead <= skew) return report
    const seqs = files.map((f) => f.seq)
    const ids = files.map((f) => f.envelope.event_id)
    if (files.length > 0) {
      report.withdrawn = { count: files.length, from_seq: seqs[0], to_seq: seqs[seqs.length - 1], first_hlc: files[0].envelope.hlc, last_hlc: files[files.length - 1].envelope.hlc }
    }
    report.membership_changes = files.filter((f) => f.envelope.type.startsWith('cairn.')).map((f) => ({ seq: f.seq, change: f.envelope.payload }))
    const applied = store.pluginState.appliedBy(self, ids)
    // A rebuild applies every row still in `events` again: with events-retention some are gone, and the tables it
    // builds would lack what they did. The operator decides then.
    if (config.eventsRetention == null) report.rebuild = applied
    else report.rebuild_not_asked = applied
    report.snapshots_dropped =
      files.length === 0
        ? []
        : store.snapshots
            .own()
            .filter((s) => (s.vector[self] ?? 0) >= seqs[0])
            .map((s) => s.plugin)
    const requests = files.filter((f) => !f.envelope.type.startsWith('cairn.')).map((f) => republishRequest(f, config.data))
    const file = requests.length === 0 ? undefined : join(config.data, `withdrawn-${seqs[0]}-${seqs[seqs.length - 1]}.ndjson`)
    if (report.dry_run) {
      report.republish_file = file ?? null
      return report
    }

    // Written and synced before the commit under a temporary name, which the commit records, renamed after it: the
    // requests are never lost (a run stopped before the rename has the next run name the file), nor left behind for
    // a withdrawal that did not happen (the next run deletes a temporary file the store does not name).
    const partial = file == null ? undefined : `${file}.partial`
    if (partial != null) {
      try {
        writeSynced(partial, `${requests.map((r) => JSON.stringify(r)).join('\n')}\n`)
      } catch (err) {
        throw new DataDirError(`Cannot write ${partial}: ${(err as Error).message}; nothing was withdrawn`)
      }
    }
    const clock = new HybridClock(now, { maxSkewMs: skew })
    if (floor != null) clock.resume(floor)
    const components = { self, store, blocks, log: silentLog, metrics: new Metrics(), clock, events: new CairnEventBus() }
    const own = outbox({ privateKey: opened.privateKey, maxBatch: config.maxBatch, maxEventSize: config.maxEventSize, maxDepth: config.maxDepth })(components)
    own.start()
    try {
      const { hlc } = await own.withdraw(seqs, report.snapshots_dropped, () => {
        store.events.deleteSeqs(self, seqs)
        store.pluginState.forgetEvents(self, ids)
        store.stateKeys.forgetSeqs(self, seqs)
        for (const plugin of report.rebuild) requestRebuild(store, plugin)
        if (file != null) store.meta.put(PENDING_FILE, basename(file))
      })
      report.head = { seq: own.seq, hlc }
    } catch (err) {
      if (partial != null) rmSync(partial, { force: true })
      throw err
    } finally {
      await own.stop()
    }
    if (partial != null && file != null) {
      renameSync(partial, file)
      syncDir(config.data)
      store.meta.delete(PENDING_FILE)
      report.republish_file = file
    }
    return report
  } finally {
    opened.close()
  }
}

/**
 * Finishes what a run stopped after its commit left: names the republish file its withdrawal recorded, and deletes
 * the temporary files of runs that committed nothing (their events were not withdrawn).
 *
 * @returns the republish file named now (or named already by a run stopped before it forgot it); undefined when none
 */
function finishPending(store: Store, dir: string): string | undefined {
  const pending = store.meta.get(PENDING_FILE)
  for (const name of readdirSync(dir)) {
    if (PARTIAL.test(name) && name !== `${pending}.partial`) rmSync(join(dir, name), { force: true })
  }
  if (pending == null) return undefined
  const file = join(dir, pending)
  if (existsSync(`${file}.partial`)) {
    renameSync(`${file}.partial`, file)
    syncDir(dir)
  }
  store.meta.delete(PENDING_FILE)
  return existsSync(file) ? file : undefined
}

/** Writes `text` to a new file (0600) and syncs it to disk. */
function writeSynced(path: string, text: string): void {
  const fd = openSync(path, 'w', 0o600)
  try {
    writeSync(fd, text)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

/** Syncs a directory, so that a rename in it outlives a power cut. */
function syncDir(dir: string): void {
  const fd = openSync(dir, 'r')
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

/**
 * @throws UsageError when the median of other producers' last heads is stamped more than max-clock-skew ahead of
 * `wall`: this clock is behind theirs (set back, or reset at boot), and the events it would take for stamped ahead
 * are not
 */
function assertClockNotBehind(store: Store, self: string, wall: number, skew: number, dir: string): void {
  const offsets = store.producers
    .all()
    .filter((p) => p.producer !== self && p.head_hlc != null)
    .map((p) => (hlcMs(p.head_hlc!) ?? 0) - wall)
    .sort((a, b) => a - b)
  if (offsets.length === 0) return
  const median = offsets[Math.floor((offsets.length - 1) / 2)]
  if (median <= skew) return
  throw new UsageError(
    `Cannot reclock ${dir}: this clock looks behind, not set right: the last heads of ${offsets.length} other producer(s) are stamped a median of ${formatMs(median)} ahead of it (more than --max-clock-skew ${formatMs(skew)}). Set the system clock right (NTP) and start the node: its events were stamped right, and it goes on after its last head`
  )
}

/**
 * @returns the own files still in the outbox stamped after `limit` (ms), by seq, and the stamp of the last file kept
 * (the clock goes on from it); undefined when none is kept
 * @throws DataDirError when a file's block is missing or unreadable
 */
function stampedAhead(store: Store, blocks: SqliteBlockstore, self: string, limit: number, config: NodeConfig): { files: Withdrawn[]; floor?: string } {
  const files: Withdrawn[] = []
  let below = Number.MAX_SAFE_INTEGER
  for (;;) {
    const page = store.outbox.unprunedBelow(below, PAGE)
    if (page.length === 0) return { files: files.reverse() }
    for (const row of page) {
      const envelope = readOwn(blocks, self, row, config)
      // Own stamps only grow with the seq among the files kept: the first one within the limit ends the run.
      if ((hlcMs(envelope.hlc) ?? 0) <= limit) return { files: files.reverse(), floor: envelope.hlc }
      files.push({ seq: row.seq, envelope, key: keyOf(row), hash: row.request_hash })
    }
    below = page[page.length - 1].seq
  }
}

/** @returns the envelope of an own file, read from blocks.db (what peers are served) */
function readOwn(blocks: SqliteBlockstore, self: string, row: { seq: number; event_id: string; cid: string }, config: NodeConfig): EventEnvelope {
  const bytes = blocks.getSync(CID.parse(row.cid))
  if (bytes == null) throw new DataDirError(`Cannot reclock ${config.data}: the file of own seq ${row.seq} (${row.cid}) is not in blocks.db; run cairn doctor --data ${config.data}`)
  const read = readEventFile(bytes, { producer: self, seq: row.seq, eventId: row.event_id }, { maxEventSize: Number.MAX_SAFE_INTEGER, maxDepth: config.maxDepth })
  if ('rejection' in read) throw new DataDirError(`Cannot reclock ${config.data}: the file of own seq ${row.seq} (${row.cid}) cannot be read: ${read.rejection.detail}`)
  return read.envelope
}

/**
 * @returns the idempotency key an own file was published under, which its republish request carries; undefined for
 * one published without a key. A row from before keys were kept (no request hash either) answered a key equal to
 * its event_id (OutboxTable.byIdempotencyKey): that is its key.
 */
function keyOf(row: { event_id: string; idempotency_key: string | null; request_hash: string | null }): string | undefined {
  return row.idempotency_key ?? (row.request_hash == null ? row.event_id : undefined)
}

/**
 * @returns the publish request that publishes what a withdrawn event said again: under the key it was published
 * with, freed by the withdrawal, so that the file's publish and a backend's retry of its original request (which
 * never saw the answer) publish it once between them, whichever comes first; a second run of the file publishes
 * nothing twice. A key that is a UUIDv7 is the event_id again: a peer that took the withdrawn event keeps it and
 * takes this one for the same event ((producer, event_id)), one that did not takes this one. An event published
 * without a key gets a new UUIDv7 for one.
 *
 * The request hashes as the original did (requestHash: everything but the key, an omitted version being v1): the
 * envelope holds the request's type, payload, actor, correlation and causation ids as sent, and its version is
 * the one sent or, when none was, v1 (validatePublish never picks another), which hashes as the omitted one. So
 * the request is rebuilt from the envelope rather than its hash carried. That is checked against the hash the
 * row keeps: were they to differ, the file and a retry would refuse each other as a different request under one
 * key (409), and nothing is withdrawn.
 *
 * @throws DataDirError when the rebuilt request does not hash as the one that published the event
 */
function republishRequest(f: Withdrawn, dir: string): Record<string, unknown> {
  const e = f.envelope
  const r: Record<string, unknown> = { event_id: f.key ?? uuidv7(), type: e.type, version: e.version, payload: e.payload }
  if (e.actor != null) r.actor = e.actor
  if (e.correlation_id != null) r.correlation_id = e.correlation_id
  if (e.causation_id != null) r.causation_id = e.causation_id
  if (f.key != null && f.hash != null && requestHash(r as PublishRequest, new CanonicalText(canonicalJson(e.payload))) !== f.hash) {
    throw new DataDirError(
      `Cannot reclock ${dir}: the publish request rebuilt from own seq ${f.seq} does not match the request it was published from (its idempotency key ${JSON.stringify(f.key)} would refuse one of them); nothing was withdrawn. This is a bug in cairn: report it`
    )
  }
  return r
}
