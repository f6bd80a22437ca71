import type { CID } from 'multiformats/cid'
import type { Log } from '../log/logger.ts'
import type { EventEnvelope } from '../model/envelope.ts'
import { readEventFile, type FileLimits, type Rejection } from '../model/eventFile.ts'
import type { CairnEventBus, SyncProgress } from '../node/events.ts'
import type { Store } from '../store/store.ts'
import type { HybridClock } from '../model/hlc.ts'
import { ClockSkewError } from '../errors.ts'
import { GAPS_KEEP } from '../store/gaps.ts'
import { fetchBlocks, type WalkFetcher } from './fetch.ts'
import type { Listing } from './listing.ts'
import { chunksOf, classifyGap, gapsIn, INGEST_CHUNK, INGEST_CHUNK_BYTES, type Refused } from './plan.ts'

/** Below this many files a walk fetches them one by one (they mostly came with the hint anyway). */
const BULK_FROM = 64

/** A backlog of more than this many files reports its progress. */
const PROGRESS_FROM = 300

/** What ingest needs besides the listing: where it writes and tells, and how it checks a file. */
export interface IngestContext {
  store: Store
  events: CairnEventBus
  log: Log
  limits: FileLimits & { maxFilesPerWalk: number }
  checkEvent?: (envelope: EventEnvelope) => Rejection | undefined
  /** holds events stamped too far ahead (the clock rule, model/hlc.ts) */
  clock: HybridClock
}

/** The producer's row as the walk read it. */
export interface WalkTarget {
  headRoot: string
  processedSeq: number
  /** the producer's head seq when this node first heard of it */
  joinedSeq: number
  /** the head's `pruned_plain` (null: it does not say) */
  prunedPlain: number | null
  /** the head's count of files compacted so far (0: it does not say): recorded with a whole walk */
  compacted: number
}

/** How long an ingest waited for files and took to check and store them. */
export interface IngestStats {
  chunks: number
  fetchMs: number
  storeMs: number
}

/**
 * Fetches, checks and stores the files of `listing` in chunks of at most INGEST_CHUNK files (or
 * max-files-per-walk when it is lower) and INGEST_CHUNK_BYTES, the next chunk on its way while one is
 * stored: at most two chunks of files are in memory, however long the backlog. Each chunk is one transaction: its events, its quarantined
 * entries, its gaps, how far the producer was processed and, with the last chunk of a complete listing,
 * the directories walked and the root synced (a listing of one pass ends at its `top`). What was processed is the contiguous run of seqs found (accepted or quarantined)
 * from processed+1; seqs the tree no longer holds are gaps: recorded, then passed over. An event refused for its
 * producer's membership (`not_member`) ends the run and the walk before it, unrecorded.
 *
 * @throws Error when a file cannot be fetched; the chunks before it stay stored
 */
export async function ingest(f: WalkFetcher, target: WalkTarget, listing: Listing, ctx: IngestContext): Promise<IngestStats> {
  const { producer } = f
  const planned = listing.files
  const progress = progressReporter(planned.toFetch(), (p) => {
    ctx.events.safeDispatchEvent('sync:progress', { detail: { producer, ...p } })
  })
  // The seqs found (fetched or refused as oversized), ascending: gaps are computed from them, never by
  // counting through the range.
  const found = planned.seqList()
  const chunks = chunksOf(planned, Math.min(ctx.limits.maxFilesPerWalk, INGEST_CHUNK), INGEST_CHUNK_BYTES)
  type Fetched = { rows: number[]; cids: CID[]; files: Uint8Array[] }
  const fetchFiles = async ([first, end]: [number, number]): Promise<Fetched> => {
    const rows: number[] = []
    for (let i = first; i < end; i++) if (!planned.oversized(i)) rows.push(i)
    const cids = rows.map((i) => planned.cid(i))
    return { rows, cids, files: await fetchBlocks(f, cids, { bulkFrom: BULK_FROM, concurrency: 512, onFetched: progress }) }
  }
  // A prefetch that fails while the chunk before it is stored must not become an unhandled rejection.
  const prefetch = (chunk: [number, number]): Promise<Fetched> => {
    const p = fetchFiles(chunk)
    p.catch(() => {})
    return p
  }
  let fetching = prefetch(chunks[0])
  let prevTop = target.processedSeq
  let fetchMs = 0
  let storeMs = 0
  for (let k = 0; k < chunks.length; k++) {
    const [first, end] = chunks[k]
    const f0 = performance.now()
    const { rows, cids, files } = await fetching
    fetchMs += performance.now() - f0
    if (k + 1 < chunks.length) fetching = prefetch(chunks[k + 1])
    const s0 = performance.now()
    const read = rows.map((row, i) => readEventFile(files[i], { producer, seq: planned.seq(row), eventId: planned.eventId(row) }, ctx.limits))
    const clock = clockHold(read, producer, ctx.clock)
    const rejections = read.map((r, i) => (clock.at >= 0 && i >= clock.at ? undefined : 'envelope' in r ? ctx.checkEvent?.(r.envelope) : r.rejection))
    // An event refused for its producer's membership (a removal or another change applied while this walk was
    // under way) stops the walk before it, where the cap of a walk started now would: it and the events after
    // it are neither processed nor quarantined, so that they are taken if an owner adds the producer again.
    const outAt = rejections.findIndex((r) => r?.reason === 'not_member')
    const heldAt = outAt >= 0 ? outAt : clock.at
    const last = heldAt < 0 && k === chunks.length - 1
    const top = heldAt >= 0 ? planned.seq(rows[heldAt]) - 1 : last ? listing.top : planned.seq(rows[rows.length - 1])
    const accepted: Array<{ envelope: EventEnvelope; cid: string }> = []
    // Refusals by name go with the first chunk; files refused as oversized with the chunk whose seqs hold them.
    const chunkRefused: Refused[] = k === 0 ? [...listing.refused] : []
    for (let i = first; i < end; i++) {
      if (planned.oversized(i) && planned.seq(i) > prevTop && (last || planned.seq(i) <= top)) chunkRefused.push(planned.refusal(i))
    }
    rows.forEach((row, i) => {
      if (heldAt >= 0 && i >= heldAt) return
      const r = read[i]
      const rejection = rejections[i]
      if (rejection == null && 'envelope' in r) accepted.push({ envelope: r.envelope, cid: cids[i].toString() })
      else if (rejection != null) chunkRefused.push({ path: planned.path(row), cid: cids[i].toString(), rejection, seq: planned.seq(row) })
    })
    const gaps = gapsIn(found, prevTop + 1, top).flatMap(([from, to]) => classifyGap(from, to, target.joinedSeq, target.prunedPlain))

    const now = Date.now()
    const added: EventEnvelope[] = []
    const collisions: Array<{ envelope: EventEnvelope; other: string }> = []
    // The blocks the walk took from memory (its directories, these files) are stored before the rows
    // that depend on them; a store that fails throws here, and nothing is recorded.
    f.batch?.flush()
    let widened = new Set<number>()
    ctx.store.transaction(() => {
      for (const a of accepted) {
        // An event is (producer, event_id): one sharing another producer's event_id is kept and counted.
        const outcome = ctx.store.events.add(a.envelope, a.cid, now)
        if (outcome.added) added.push(a.envelope)
        if (outcome.collidesWith != null) collisions.push({ envelope: a.envelope, other: outcome.collidesWith })
      }
      for (const r of chunkRefused) {
        ctx.store.quarantine.add({ producer, path: r.path, cid: r.cid ?? null, reason: r.rejection.reason, detail: r.rejection.detail, detected_at: now })
      }
      if (chunkRefused.length > 0) ctx.store.quarantine.trim(producer)
      widened = ctx.store.gaps.record(producer, gaps, now)
      if (last && listing.complete) ctx.store.remoteDirs.putAll(producer, listing.walked)
      ctx.store.producers.advance(producer, top, last && listing.complete ? { root: target.headRoot, compacted: target.compacted } : undefined)
    })
    prevTop = top
    for (const r of chunkRefused) {
      ctx.events.safeDispatchEvent('peer:rejected', { detail: { reason: r.rejection.reason, detail: `${producer}/${r.path}: ${r.rejection.detail}`, peer: producer } })
    }
    for (const c of collisions) {
      const detail = `${producer} seq ${c.envelope.seq} has event_id ${c.envelope.event_id}, as an event of ${c.other} does: both are kept`
      ctx.events.safeDispatchEvent('peer:rejected', { detail: { reason: 'event_id_collision', detail, peer: producer } })
    }
    // Once the transaction is in: a walk that rolled back says nothing, and its retry says it.
    for (const kind of new Set([...widened].map((i) => gaps[i][2]))) {
      if (!ctx.store.gaps.firstWidening(producer, kind)) continue
      ctx.log.warn(`${kind} gaps of ${producer} fill ${GAPS_KEEP} rows: each further one widens its last (cairn gaps then shows ranges that span seqs this node holds, with how many are missing)`, {
        producer,
        kind,
        reason: 'gaps_widened'
      })
    }
    gaps.forEach(([from, to, kind], i) => {
      // Past GAPS_KEEP rows, a gap that widens a row is one more of a flood (heads that skip seqs): debug level only.
      if (widened.has(i)) ctx.log.debug(`gap in ${producer}: seq ${from}..${to} (${kind}), recorded by widening its last gap`, { producer, from_seq: from, to_seq: to, reason: 'gap_widened' })
      else if (kind === 'lost') ctx.log.warn(`gap in ${producer}: seq ${from}..${to} is no longer in its outbox`, { producer, from_seq: from, to_seq: to, reason: 'gap_lost' })
      else if (kind === 'horizon')
        ctx.log.info(`history of ${producer} starts after seq ${to}: earlier events were pruned before this node joined`, { producer, from_seq: from, to_seq: to, reason: 'history_horizon' })
      else ctx.log.debug(`seq ${from}..${to} of ${producer} compacted: newer events superseded them`, { producer, from_seq: from, to_seq: to, reason: 'gap_compacted' })
    })
    storeMs += performance.now() - s0
    if (added.length > 0) ctx.events.safeDispatchEvent('events:ingested', { detail: added })
    const out = outAt >= 0 ? rejections[outAt] : undefined
    if (out != null) {
      ctx.events.safeDispatchEvent('peer:rejected', { detail: { reason: out.reason, detail: `seq ${planned.seq(rows[outAt])} and later: ${out.detail}`, peer: producer } })
      // The walk ends here, with no retry: the membership change that would let these events in (an owner
      // adding the producer again) schedules the producer's walk.
      return { chunks: k + 1, fetchMs, storeMs }
    }
    if (clock.why != null) {
      ctx.events.safeDispatchEvent('peer:rejected', { detail: { reason: 'clock_skew', detail: `seq ${planned.seq(rows[heldAt])} of ${clock.why}`, peer: producer } })
      // Thrown after the events before it are stored: the walk is retried with backoff, and this event
      // and those after it (the producer's seq order) are ingested once this node's clock has caught up.
      throw new ClockSkewError(`Holding seq ${planned.seq(rows[heldAt])} and later of ${clock.why}`, clock.retryInMs)
    }
  }
  return { chunks: chunks.length, fetchMs, storeMs }
}

/** @returns the index of the first event stamped too far ahead, and why it is held; -1 when none is */
function clockHold(read: ReturnType<typeof readEventFile>[], producer: string, clock: HybridClock): { at: number; why?: string; retryInMs?: number } {
  for (let i = 0; i < read.length; i++) {
    const r = read[i]
    const why = 'envelope' in r ? clock.hold(producer, r.envelope.hlc) : undefined
    if (why != null && 'envelope' in r) return { at: i, why, retryInMs: (clock.tooFarAhead(r.envelope.hlc) ?? 0) - clock.maxSkewMs }
  }
  return { at: -1 }
}

/**
 * @returns a function to call with each number of files that arrived; for a backlog over
 * PROGRESS_FROM files it reports the progress about once a second, and once at the end
 */
function progressReporter(total: number, report: (p: Omit<SyncProgress, 'producer'>) => void): (n: number) => void {
  let done = 0
  let reported = Date.now()
  const started = reported
  return (n) => {
    done += n
    if (total > PROGRESS_FROM && (Date.now() - reported > 1000 || done === total)) {
      reported = Date.now()
      const rate = done / Math.max(0.001, (reported - started) / 1000)
      report({ done, total, rate: Math.round(rate), eta_s: Math.round((total - done) / rate) })
    }
  }
}
