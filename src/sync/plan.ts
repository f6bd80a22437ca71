import type { CID } from 'multiformats/cid'
import { isDayName, isHourName, parseFileName } from '../model/layout.ts'
import type { DirEntry } from '../unixfs/tree.ts'
import { RefusedTreeError } from '../errors.ts'
import type { GapKind } from '../store/gaps.ts'
import { PlannedFiles, type Refused } from './plannedFiles.ts'

export type { Refused } from './plannedFiles.ts'

/** The seqs a walk looks for, and the largest file it fetches. */
export interface WalkWindow {
  processedSeq: number
  /** the seq at which the directories were last walked whole: a walk re-reads what changed since then */
  syncedSeq?: number
  headSeq: number
  /** files the producer's head says it compacted out of its tree since the last whole walk */
  compactedSince?: number
  maxEventSize: number
}

/** @returns why an entry of the root is not a day bucket, or undefined when it is one */
export function refuseDay(day: DirEntry): Refused | undefined {
  if (isDayName(day.name)) return undefined
  return { path: day.name, cid: day.cid.toString(), rejection: { reason: 'name_mismatch', detail: `${day.name} is not a day bucket (yyyy-mm-dd)` } }
}

/** @returns why an entry of a day bucket is not an hour bucket, or undefined when it is one */
export function refuseHour(dayName: string, hour: DirEntry): Refused | undefined {
  if (isHourName(hour.name)) return undefined
  return { path: `${dayName}/${hour.name}`, cid: hour.cid.toString(), rejection: { reason: 'name_mismatch', detail: `${hour.name} is not an hour bucket (00-23)` } }
}

/**
 * Sorts the files of an hour bucket (or of one of its shards): those to fetch and those refused as
 * oversized from their link size (without fetching them; a file that lies about its size is caught after
 * the fetch) go to `found`, those refused by name are returned. Files below the window are passed over;
 * each seq in the window is registered with `budget`, which refuses the tree for a seq above the head.
 *
 * @returns the files refused by their name, in the order of `files`
 * @throws RefusedTreeError from the budget, or from `found` for a seq found twice
 */
export function planFiles(hourPath: string, files: readonly DirEntry[], window: WalkWindow, found: SeqWindow, budget?: WalkBudget): Refused[] {
  const refused: Refused[] = []
  for (const file of files) {
    const parsed = parseFileName(file.name)
    if (parsed == null) {
      const path = `${hourPath}/${file.name}`
      budget?.refused(path)
      refused.push({ path, cid: file.cid.toString(), rejection: { reason: 'name_mismatch', detail: `${file.name} does not follow <seq, 12 digits>-<event_id>.json` } })
      continue
    }
    if (parsed.seq <= window.processedSeq) continue
    budget?.seq(parsed.seq, `${hourPath}/${file.name}`)
    if (parsed.seq > window.headSeq) continue
    found.keep(hourPath, parsed.seq, parsed.eventId, file.cid.bytes, file.size, file.size > window.maxEventSize)
  }
  return refused
}

/** Bad names (not a day, an hour or an event file) a walk records before it refuses the whole tree. */
export const MAX_REFUSED_PER_WALK = 1000

/**
 * The most directories one walk reads, per file it may hold (max-files-per-walk): a bound the operator
 * sets, whatever a head claims (each directory costs a few hundred bytes while the walk lists). An
 * honest bucket of m files has about 0.4·m shards (fanout 16), so the default (20,000 × 50 directories)
 * covers about 2.5 million events of one producer since its last whole walk.
 */
export const DIRS_PER_FILE = 50

/** One pass of a walk keeps at most this many times max-files-per-walk seqs (see SeqWindow). */
export const WINDOW_CHUNKS = 5

/**
 * The most event files one ingest transaction fetches, parses and stores (the next chunk is fetched
 * meanwhile, so two are in memory): two batches of the blocks protocol. A catch-up's memory follows
 * this constant and INGEST_CHUNK_BYTES, not its length.
 */
export const INGEST_CHUNK = 2048

/** …and the most bytes of event files in a chunk, by the sizes their links give (large events). */
export const INGEST_CHUNK_BYTES = 8 * 1024 * 1024

/** Levels of HAMT shards below a bucket's root beyond 2 × log16(head seq + 1). */
export const DEPTH_SLACK = 6

/**
 * What one walk may read, from the head's seq range r = head seq − processed seq: the walk stops (and
 * refuses the tree) as soon as a bound is exceeded, before it fetches the block that would exceed it.
 *
 * - every directory CID (root, day, hour, shard) is read at most once: a tree that links one directory
 *   from two places is refused (an honest tree never does: a canonical HAMT gives each name one place);
 * - HAMT shards at most `maxDepth` levels below a bucket's root: 2·⌈log16(head seq + 1)⌉ + DEPTH_SLACK.
 *   A bucket of m names reaches depth d only when two names share d hash nibbles, which happens with
 *   probability ≤ m²/2 · 16^−d, so an honest bucket (m ≤ head seq) goes deeper than this with
 *   probability below 16^−6/2; an attacker needs ~16^d hashes to build a chain d deep;
 * - directories read at most `maxDirs`: 1 + (r + 1 + c)·(maxDepth + 2) + allowance, and never more than
 *   DIRS_PER_FILE × allowance. A new event changes its day, its hour and the shards on its path, and so
 *   does each of the c files the producer's signed head says it compacted out since the last whole walk;
 *   the allowance (max-files-per-walk, the operator's) covers the buckets a plain prune leaves partly
 *   emptied (one, and those keeping membership changes);
 * - no seq above the head (each seq found once: SeqWindow);
 * - at most MAX_REFUSED_PER_WALK bad names recorded.
 *
 * Memory while listing is the seqs a pass keeps (SeqWindow: ≤ 2 × WINDOW_CHUNKS × allowance) and the
 * directories read (≤ maxDirs, each ≤ fanout links): bounds the operator sets, not the head.
 */
export class WalkBudget {
  readonly maxDirs: number
  readonly maxDepth: number
  /** directories read so far */
  dirs = 0
  private readonly seen = new Set<string>()
  private bad = 0
  private readonly window: WalkWindow

  constructor(window: WalkWindow, allowance: number) {
    this.window = window
    // The directories changed since the last whole walk are read again, however far a chunked walk got since.
    const range = Math.max(0, window.headSeq - Math.min(window.processedSeq, window.syncedSeq ?? window.processedSeq))
    this.maxDepth = 2 * Math.ceil(Math.log2(window.headSeq + 1) / 4) + DEPTH_SLACK
    const paths = range + 1 + (window.compactedSince ?? 0)
    this.maxDirs = Math.min(1 + paths * (this.maxDepth + 2) + Math.max(0, allowance), DIRS_PER_FILE * Math.max(1, allowance))
  }

  /**
   * Accounts for a directory about to be read.
   *
   * @throws RefusedTreeError when its CID was read already in this walk, or the walk reads too many
   */
  enter(cid: CID, path: string): void {
    const key = cid.toString()
    if (this.seen.has(key)) throw new RefusedTreeError('repeated_directory', `${path || '/'} links directory ${key} a second time`)
    if (this.dirs + 1 > this.maxDirs)
      throw new RefusedTreeError(
        'over_budget',
        `${path || '/'}: more than ${this.maxDirs} directories for seqs ${this.window.processedSeq + 1}..${this.window.headSeq} (at most ${DIRS_PER_FILE} per --max-files-per-walk)`
      )
    this.seen.add(key)
    this.dirs++
  }

  /**
   * Accounts for a shard `depth` levels below its bucket's root.
   *
   * @throws RefusedTreeError when it is deeper than `maxDepth`
   */
  depth(depth: number, path: string): void {
    if (depth > this.maxDepth) throw new RefusedTreeError('too_deep_tree', `${path}: a HAMT shard ${depth} levels deep, more than the ${this.maxDepth} head seq ${this.window.headSeq} justifies`)
  }

  /**
   * Accounts for a file whose seq is above the processed one.
   *
   * @throws RefusedTreeError when the seq is above the head's
   */
  seq(seq: number, path: string): void {
    if (seq > this.window.headSeq) throw new RefusedTreeError('seq_above_head', `${path}: seq ${seq} is above the head's ${this.window.headSeq}`)
  }

  /**
   * Accounts for an entry refused by its name.
   *
   * @throws RefusedTreeError past MAX_REFUSED_PER_WALK of them
   */
  refused(path: string): void {
    if (++this.bad > MAX_REFUSED_PER_WALK) throw new RefusedTreeError('too_many_refused', `${path}: more than ${MAX_REFUSED_PER_WALK} badly named entries`)
  }
}

/** What one pass of a walk covers. */
export interface Pass {
  /** the files to fetch and those refused as oversized, in seq order */
  files: PlannedFiles
  /** the highest seq this pass covers: seqs up to it not found are gaps */
  top: number
  /** whether the pass covers everything up to the head; if not, another pass follows from `top` */
  complete: boolean
}

/**
 * The seqs one pass of a walk keeps: the `size` lowest found above the processed one, in memory that
 * `size` bounds (never more than 2 × size rows of PlannedFiles), however many files the tree holds or its
 * head claims. A pass that found more covers seqs up to the highest it kept, and the next pass goes on
 * from there: passes follow the seqs that exist, so a wide, sparse range costs one pass, not one per size.
 * A seq found twice refuses the tree, when the rows are next sorted (at 2 × size rows, or when the pass
 * finishes); a duplicate above what a pass keeps is refused by the pass that keeps it (the cut only moves
 * down, so both copies fall on the same side of it).
 */
export class SeqWindow {
  private files: PlannedFiles
  /** seqs above this are not kept (Infinity until the window first overflows) */
  private cut = Number.POSITIVE_INFINITY
  private readonly size: number

  /** @param maxEventSize the limit an oversized file's refusal names */
  constructor(size: number, maxEventSize = Number.POSITIVE_INFINITY) {
    this.size = Math.max(1, size)
    this.files = new PlannedFiles(maxEventSize)
  }

  /** rows held now (at most 2 × size) */
  get held(): number {
    return this.files.length
  }

  /**
   * Keeps a file `planFiles` found in the bucket at `dir`: one to fetch, or one refused as `oversized`.
   *
   * @throws RefusedTreeError when a seq was found twice
   */
  keep(dir: string, seq: number, eventId: string, cid: Uint8Array, size: number, oversized: boolean): void {
    if (seq > this.cut) return
    this.files.push(dir, seq, eventId, cid, size, oversized)
    if (this.files.length >= 2 * this.size) this.trim()
  }

  /**
   * @returns what this pass covers, up to `headSeq` at most
   * @throws RefusedTreeError when a seq was found twice
   */
  finish(headSeq: number): Pass {
    this.trim()
    const top = Number.isFinite(this.cut) ? Math.min(this.cut, headSeq) : headSeq
    return { files: this.files, top, complete: top >= headSeq }
  }

  /** Sorts the rows by seq, refuses a seq found twice, keeps the `size` lowest and lowers the cut to the highest kept. */
  private trim(): void {
    const files = this.files
    const order = files.order()
    for (let k = 1; k < order.length; k++) {
      if (files.seq(order[k]) === files.seq(order[k - 1])) throw new RefusedTreeError('duplicate_seq', `${files.path(order[k])}: seq ${files.seq(order[k])} is in the tree twice`)
    }
    const n = Math.min(this.size, order.length)
    if (order.length > this.size) this.cut = files.seq(order[n - 1])
    this.files = files.select(order, n)
  }
}

/**
 * Splits the sorted rows of `files` into chunks, each a range of rows `[from, to)`: at most `size` files to
 * fetch and, past the first of them, at most `maxBytes` of the sizes their links give, so that memory stays
 * bounded on a long catch-up. A chunk ends at its last file to fetch, so the oversized rows between two
 * chunks go with the later one, and the last chunk takes the rest; there is always one chunk (of no file
 * to fetch when there is none), the one that records gaps and completes the walk.
 */
export function chunksOf(files: PlannedFiles, size: number, maxBytes = Number.POSITIVE_INFINITY): Array<[number, number]> {
  const chunks: Array<[number, number]> = []
  const most = Math.max(1, size)
  let from = 0
  let to = 0
  let count = 0
  let bytes = 0
  for (let i = 0; i < files.length; i++) {
    if (files.oversized(i)) continue
    const s = files.size(i)
    if (count > 0 && (count >= most || bytes + s > maxBytes)) {
      chunks.push([from, to])
      from = to
      count = 0
      bytes = 0
    }
    count++
    bytes += s
    to = i + 1
  }
  chunks.push([from, files.length])
  return chunks
}

/**
 * @returns the ranges of seqs in `from..to` that are not in `found` (sorted ascending: the seqs
 * accepted, quarantined or refused as oversized), in time proportional to the seqs found in the range
 * (a binary search to the first), however wide the range: a head's seq may be up to 2^53
 */
export function gapsIn(found: ArrayLike<number>, from: number, to: number): Array<[number, number]> {
  const gaps: Array<[number, number]> = []
  if (from > to) return gaps
  let lo = 0
  let hi = found.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (found[mid] < from) lo = mid + 1
    else hi = mid
  }
  let next = from
  for (let i = lo; i < found.length && found[i] <= to; i++) {
    if (found[i] > next) gaps.push([next, found[i] - 1])
    next = found[i] + 1
  }
  if (next <= to) gaps.push([next, to])
  return gaps
}

/**
 * Splits a gap by what it is to this node: seqs up to `joinedSeq` (the producer's head when this node first
 * heard of it) are `horizon`, history pruned before it joined; above that, seqs up to the head's
 * `prunedPlain` may have gone by plain retention and are `lost` (an alarm), and the seqs above it can only
 * have gone by compaction, superseded by newer events the tree still holds: `compacted`. A head that does not
 * say (`prunedPlain` null) makes every such seq `lost`.
 *
 * @returns the parts of `from..to`, ascending, each with its kind
 */
export function classifyGap(from: number, to: number, joinedSeq: number, prunedPlain: number | null): Array<[number, number, GapKind]> {
  const out: Array<[number, number, GapKind]> = []
  const lostTo = prunedPlain ?? Number.MAX_SAFE_INTEGER
  const parts: Array<[number, number, GapKind]> = [
    [from, Math.min(to, joinedSeq), 'horizon'],
    [Math.max(from, joinedSeq + 1), Math.min(to, lostTo), 'lost'],
    [Math.max(from, joinedSeq + 1, lostTo + 1), to, 'compacted']
  ]
  for (const [a, b, kind] of parts) if (a <= b) out.push([a, b, kind])
  return out
}
