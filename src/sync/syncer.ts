import { CID } from 'multiformats/cid'
import type { SqlDatabase } from '../runtime/sqlite.ts'
import type { EventEnvelope } from '../model/envelope.ts'
import { insertEvent } from '../store/events.ts'
import { verifyHeadMessage, type Head } from '../model/head.ts'
import { InvalidHeadError } from '../errors.ts'
import type { HybridClock } from '../model/hlc.ts'
import { isDayName, isHourName, parseFileName } from '../model/layout.ts'
import type { DirEntry } from '../unixfs/tree.ts'
import { readDirectoryNode, type DirectoryNode } from '../unixfs/hamt.ts'
import { readEventFile, type FileLimits, type Rejection } from '../model/eventFile.ts'
import { trace } from '../log/trace.ts'

/** Fetches a block, from the local store or from the connected peers (bitswap asks them all). */
export type BlockGetter = (cid: CID, options: { signal: AbortSignal }) => Promise<Uint8Array>

/**
 * Fetches many blocks at once (a catch-up's event files), from the local store or in batches from a
 * peer; @returns those it got, each already checked against its CID. What it misses goes to getBlock.
 */
export type BlocksGetter = (producer: string, cids: readonly CID[], options: { signal: AbortSignal, onBlocks: (n: number) => void }) => Promise<Map<string, Uint8Array>>

/** Below this many files a walk fetches them one by one (they mostly came with the hint anyway). */
const BULK_FROM = 64

export interface SyncerInit {
  db: SqlDatabase
  self: string
  clock: HybridClock
  getBlock: BlockGetter
  getBlocks?: BlocksGetter
  limits: FileLimits & { maxFilesPerWalk: number }
  fetchTimeout: number
  /** stores blocks a head message carried (already checked against their CIDs) */
  storeBlocks?: (blocks: Array<{ cid: CID, bytes: Uint8Array }>) => void
  /** whose heads are accepted; undefined accepts every holder of the swarm key */
  isMember?: (producer: string) => boolean
  /** a further check of each envelope (producer policy, payload schema); a rejection quarantines the file */
  checkEvent?: (envelope: EventEnvelope) => Rejection | undefined
  /** called after new rows were added to `events` */
  onIngested?: (events: EventEnvelope[]) => void
  onHead?: (head: Head) => void
  /** catch-up progress of a walk with a large backlog, about once a second */
  onProgress?: (p: { producer: string, done: number, total: number, rate: number, eta_s: number }) => void
  onReject?: (reason: string, detail: string, context: { producer?: string, peer?: string, path?: string }) => void
  log?: (level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void
}

interface Candidate {
  seq: number
  eventId: string
  cid: CID
  path: string
}

/**
 * Turns heads into rows of `events`. For a head that is news it fetches the new root, walks only the
 * directories whose CIDs changed since the last walk, fetches the files whose seq is above the processed
 * one, checks them, and inserts them in seq order. Gaps (seqs no longer in the tree) are recorded.
 */
export class Syncer {
  private readonly init: SyncerInit
  private readonly running = new Map<string, Promise<void>>()
  private readonly dirty = new Set<string>()
  private readonly retry = new Map<string, ReturnType<typeof setTimeout>>()
  private readonly failures = new Map<string, number>()
  private stopped = false
  private abort = new AbortController()
  /** per producer, the walk under way: aborted when a newer head arrives while it has been stuck */
  private readonly walks = new Map<string, { abort: AbortController, progress: number }>()

  constructor (init: SyncerInit) {
    this.init = init
  }

  /** Starts syncing every producer whose head is ahead of what was processed (after a restart). */
  start (): void {
    this.stopped = false
    this.abort = new AbortController()
    for (const r of this.init.db.all<{ producer: string }>('SELECT producer FROM producers WHERE producer != ? AND head_root IS NOT NULL AND (synced_root IS NULL OR synced_root != head_root OR processed_seq < head_seq)', [this.init.self])) {
      this.schedule(r.producer)
    }
  }

  /** Stops scheduling work and waits for the walks under way. */
  async stop (): Promise<void> {
    this.stopped = true
    this.abort.abort()
    for (const t of this.retry.values()) clearTimeout(t)
    this.retry.clear()
    await Promise.allSettled([...this.running.values()])
  }

  /** @returns whether a walk is under way or due */
  get busy (): boolean {
    return this.running.size > 0 || this.dirty.size > 0 || this.retry.size > 0
  }

  /**
   * Offers a signed head, from gossip, the head exchange, or a relay.
   *
   * @returns 'new' when it moved the producer's head forward, 'old' when it changed nothing
   * @throws InvalidHeadError when it does not verify or is from a non-member
   */
  async offerHead (bytes: Uint8Array): Promise<'new' | 'old'> {
    const { head, signed, blocks } = await verifyHeadMessage(bytes)
    if (head.producer === this.init.self) return 'old'
    if (this.init.isMember != null && !this.init.isMember(head.producer)) {
      throw new InvalidHeadError('not_member', `Cannot accept head of ${head.producer}: it is not in the members list`)
    }
    const { db } = this.init
    // Blocks carried by the hint spare the round trips; unreferenced ones are garbage-collected. They
    // are kept even when the head is old (hints arrive out of order): a peer that walks to that head
    // may ask this node for them.
    if (blocks.length > 0) this.init.storeBlocks?.(blocks)
    const known = db.get<{ head_seq: number, head_hlc: string | null }>('SELECT head_seq, head_hlc FROM producers WHERE producer = ?', [head.producer])
    if (known != null && (head.seq < known.head_seq || (known.head_hlc != null && head.hlc <= known.head_hlc))) return 'old'
    this.init.clock.observe(head.hlc)
    db.run(`INSERT INTO producers (producer, head_seq, head_root, head_hlc, head_message, head_received_at, acks) VALUES (?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (producer) DO UPDATE SET head_seq = excluded.head_seq, head_root = excluded.head_root, head_hlc = excluded.head_hlc,
              head_message = excluded.head_message, head_received_at = excluded.head_received_at, acks = excluded.acks`,
    [head.producer, head.seq, head.root, head.hlc, signed, Date.now(), JSON.stringify(head.acks)])
    this.init.onHead?.(head)
    // A walk that has waited over a second for a block of an older root (one that its relays may never
    // have held) gives way to this head at once, instead of waiting out the fetch timeout.
    const walk = this.walks.get(head.producer)
    if (walk != null && performance.now() - walk.progress > 1000) walk.abort.abort(new Error('superseded by a newer head'))
    trace('head.accepted', head.seq)
    this.schedule(head.producer)
    return 'new'
  }

  /** @returns the signed heads this node knows, its own included, to relay to peers */
  knownHeads (): Uint8Array[] {
    return this.init.db.all<{ head_message: Uint8Array }>('SELECT head_message FROM producers WHERE head_message IS NOT NULL ORDER BY producer').map((r) => r.head_message)
  }

  /** Walks `producer`'s tree soon; coalesces with a walk under way. */
  schedule (producer: string): void {
    if (this.stopped) return
    if (this.running.has(producer)) {
      this.dirty.add(producer)
      return
    }
    const pending = this.retry.get(producer)
    if (pending != null) {
      clearTimeout(pending)
      this.retry.delete(producer)
    }
    const run = this.walkLoop(producer).finally(() => this.running.delete(producer))
    this.running.set(producer, run)
  }

  private async walkLoop (producer: string): Promise<void> {
    do {
      this.dirty.delete(producer)
      const walk = { abort: new AbortController(), progress: performance.now() }
      this.walks.set(producer, walk)
      try {
        await this.walk(producer)
        this.failures.delete(producer)
      } catch (err) {
        if (this.stopped) return
        // Superseded by a newer head: walk to that one now, this is no failure.
        if (walk.abort.signal.aborted && this.dirty.has(producer)) continue
        const attempt = (this.failures.get(producer) ?? 0) + 1
        this.failures.set(producer, attempt)
        const delay = Math.min(30_000, 500 * 2 ** Math.min(attempt, 6))
        this.init.db.run('UPDATE producers SET last_error = ? WHERE producer = ?', [(err as Error).message, producer])
        this.init.log?.('warn', `sync of ${producer} failed, retrying in ${delay} ms: ${(err as Error).message}`, { producer })
        const timer = setTimeout(() => {
          this.retry.delete(producer)
          this.schedule(producer)
        }, delay)
        this.retry.set(producer, timer)
        return
      } finally {
        this.walks.delete(producer)
      }
    } while (this.dirty.has(producer) && !this.stopped)
  }

  /** @returns the blocks of `cids` in order: in one batch where that pays, else one by one */
  private async fetchMany (producer: string, cids: readonly CID[]): Promise<Uint8Array[]> {
    let bulk = new Map<string, Uint8Array>()
    if (this.init.getBlocks != null && cids.length >= 8) {
      bulk = await this.init.getBlocks(producer, cids, { signal: this.walkSignal(producer), onBlocks: () => { this.progressed(producer) } }).catch(() => bulk)
    }
    return await mapLimit(cids, 64, async (cid) => bulk.get(cid.toString()) ?? await this.fetch(producer, cid))
  }

  private async fetch (producer: string, cid: CID): Promise<Uint8Array> {
    const bytes = await this.init.getBlock(cid, { signal: AbortSignal.any([AbortSignal.timeout(this.init.fetchTimeout), this.walkSignal(producer)]) })
    this.progressed(producer)
    return bytes
  }

  private walkSignal (producer: string): AbortSignal {
    const walk = this.walks.get(producer)
    return walk == null ? this.abort.signal : AbortSignal.any([this.abort.signal, walk.abort.signal])
  }

  private progressed (producer: string): void {
    const walk = this.walks.get(producer)
    if (walk != null) walk.progress = performance.now()
  }

  private async walk (producer: string): Promise<void> {
    const { db } = this.init
    const row = db.get<{ head_seq: number, head_root: string, synced_root: string | null, processed_seq: number }>(
      'SELECT head_seq, head_root, synced_root, processed_seq FROM producers WHERE producer = ?', [producer])
    // The same root can come back (an outbox pruned empty has the empty directory's CID), so a seq
    // ahead of the processed one always needs a walk: that is how gaps are found.
    if (row == null || row.head_root == null || (row.head_root === row.synced_root && row.processed_seq >= row.head_seq)) return
    const root = CID.parse(row.head_root)
    this.init.log?.('debug', `walking ${producer} to seq ${row.head_seq} (processed ${row.processed_seq})`, { producer })
    const t0 = performance.now()
    // The CID each directory had at the last walk, looked up per directory visited (a shard's children
    // together): a producer with a large outbox has tens of thousands of shards, and loading them all
    // made every walk slower.
    const seen = {
      get: (path: string): string | undefined => db.get<{ cid: string }>('SELECT cid FROM remote_dirs WHERE producer = ? AND path = ?', [producer, path])?.cid,
      /** one statement for a shard's children (up to its fanout) instead of one each */
      many: (paths: readonly string[]): Map<string, string> => paths.length === 0
        ? new Map()
        : new Map(db.all<{ path: string, cid: string }>(`SELECT path, cid FROM remote_dirs WHERE producer = ? AND path IN (${paths.map(() => '?').join(',')})`, [producer, ...paths]).map((r) => [r.path, r.cid]))
    }
    const walked = new Map<string, string>()
    const candidates: Candidate[] = []
    const rejected: Array<{ path: string, cid?: string, rejection: Rejection, seq?: number }> = []
    const oversized = new Set<number>()

    const read = async (path: string, cid: CID): Promise<DirectoryNode> => {
      try {
        return readDirectoryNode(await this.fetch(producer, cid))
      } catch (err) {
        if ((err as Error).name === 'MalformedDirectoryError') throw new Error(`${producer}/${path} is not a directory: ${(err as Error).message}`)
        throw err
      }
    }

    const list = async (path: string, cid: CID): Promise<DirEntry[]> => (await read(path, cid)).entries
    // A HAMT bucket: descend only into shards whose CID changed since the last walk, one level at a
    // time, each level's shards fetched together: a large catch-up walks hundreds of them.
    const listBucket = async (path: string, cid: CID, out: DirEntry[]): Promise<void> => {
      let level = [{ path, cid }]
      while (level.length > 0) {
        const got = await this.fetchMany(producer, level.map((l) => l.cid))
        const next: typeof level = []
        for (const [i, l] of level.entries()) {
          let node: DirectoryNode
          try {
            node = readDirectoryNode(got[i])
          } catch (err) {
            throw new Error(`${producer}/${l.path} is not a directory: ${(err as Error).message}`)
          }
          out.push(...node.entries)
          const paths = node.shards.map((shard) => `${l.path}#${shard.label}`)
          const known = seen.many(paths)
          node.shards.forEach((shard, j) => {
            if (known.get(paths[j]) !== shard.cid.toString()) next.push({ path: paths[j], cid: shard.cid })
          })
          if (l.path !== path) walked.set(l.path, l.cid.toString())
        }
        level = next
      }
    }

    const days = await list('', root)
    for (const day of days) {
      if (!isDayName(day.name)) { rejected.push({ path: day.name, cid: day.cid.toString(), rejection: { reason: 'name_mismatch', detail: `${day.name} is not a day bucket (yyyy-mm-dd)` } }); continue }
      if (seen.get(day.name) === day.cid.toString()) continue
      for (const hour of await list(day.name, day.cid)) {
        const hourPath = `${day.name}/${hour.name}`
        if (!isHourName(hour.name)) { rejected.push({ path: hourPath, cid: hour.cid.toString(), rejection: { reason: 'name_mismatch', detail: `${hour.name} is not an hour bucket (00-23)` } }); continue }
        if (seen.get(hourPath) === hour.cid.toString()) continue
        const files: DirEntry[] = []
        await listBucket(hourPath, hour.cid, files)
        for (const file of files) {
          const parsed = parseFileName(file.name)
          if (parsed == null) { rejected.push({ path: `${hourPath}/${file.name}`, cid: file.cid.toString(), rejection: { reason: 'name_mismatch', detail: `${file.name} does not follow <seq, 12 digits>-<event_id>.json` } }); continue }
          if (parsed.seq <= row.processed_seq || parsed.seq > row.head_seq) continue
          if (file.size > this.init.limits.maxEventSize) {
            // Refused from its link size, without fetching it; a file that lies about its size is caught after the fetch.
            rejected.push({ path: `${hourPath}/${file.name}`, cid: file.cid.toString(), rejection: { reason: 'oversized', detail: `${file.size} bytes is over the limit of ${this.init.limits.maxEventSize}` }, seq: parsed.seq })
            oversized.add(parsed.seq)
            continue
          }
          candidates.push({ ...parsed, cid: file.cid, path: `${hourPath}/${file.name}` })
        }
        walked.set(hourPath, hour.cid.toString())
      }
      walked.set(day.name, day.cid.toString())
    }
    candidates.sort((a, b) => a.seq - b.seq)

    const t1 = performance.now()
    let done = 0
    let reported = Date.now()
    const started = reported
    const progress = (n: number): void => {
      done += n
      // A backlog of more than a few hundred events reports its progress.
      if (candidates.length > 300 && (Date.now() - reported > 1000 || done === candidates.length)) {
        reported = Date.now()
        const rate = done / Math.max(0.001, (reported - started) / 1000)
        this.init.onProgress?.({ producer, done, total: candidates.length, rate: Math.round(rate), eta_s: Math.round((candidates.length - done) / rate) })
      }
    }
    const fetchFiles = async (chunk: Candidate[]): Promise<Uint8Array[]> => {
      let bulk = new Map<string, Uint8Array>()
      if (this.init.getBlocks != null && chunk.length >= BULK_FROM) {
        try {
          bulk = await this.init.getBlocks(producer, chunk.map((c) => c.cid), { signal: this.walkSignal(producer), onBlocks: (n) => { this.progressed(producer); progress(n) } })
        } catch (err) {
          this.init.log?.('debug', `bulk fetch from ${producer} failed, falling back to bitswap: ${(err as Error).message}`, { producer })
        }
      }
      return await mapLimit(chunk, 512, async (c) => {
        const got = bulk.get(c.cid.toString())
        if (got != null) return got
        const bytes = await this.fetch(producer, c.cid)
        progress(1)
        return bytes
      })
    }

    // The directories are walked once; the files are fetched, checked and stored in chunks of at most
    // max-files-per-walk, so memory stays bounded on a long catch-up, and the next chunk is on its way
    // while one is stored. What was processed is the contiguous run of seqs found (accepted or
    // quarantined) from processed+1; seqs the tree no longer holds are gaps: recorded, then passed over.
    const found = new Set([...candidates.map((c) => c.seq), ...oversized])
    const size = Math.max(1, this.init.limits.maxFilesPerWalk)
    const chunks: Candidate[][] = []
    for (let i = 0; i < candidates.length; i += size) chunks.push(candidates.slice(i, i + size))
    if (chunks.length === 0) chunks.push([])
    let prevTop = row.processed_seq
    // A prefetch that fails while the chunk before it is stored must not become an unhandled rejection.
    const prefetch = (chunk: Candidate[]): Promise<Uint8Array[]> => { const p = fetchFiles(chunk); p.catch(() => {}); return p }
    let fetching = prefetch(chunks[0])
    let fetchMs = 0
    let storeMs = 0
    for (let k = 0; k < chunks.length; k++) {
      const chunk = chunks[k]
      const f0 = performance.now()
      const files = await fetching
      fetchMs += performance.now() - f0
      if (k + 1 < chunks.length) fetching = prefetch(chunks[k + 1])
      const s0 = performance.now()
      const last = k === chunks.length - 1
      const top = last ? row.head_seq : chunk[chunk.length - 1].seq
      const accepted: Array<{ envelope: EventEnvelope, cid: string }> = []
      const chunkRejected = rejected.filter((r) => r.seq == null ? k === 0 : (r.seq > prevTop && (last || r.seq <= top)))
      chunk.forEach((c, i) => {
        const r = readEventFile(files[i], { producer, seq: c.seq, eventId: c.eventId }, this.init.limits)
        const rejection = 'envelope' in r ? this.init.checkEvent?.(r.envelope) : r.rejection
        if (rejection == null && 'envelope' in r) accepted.push({ envelope: r.envelope, cid: c.cid.toString() })
        else if (rejection != null) chunkRejected.push({ path: c.path, cid: c.cid.toString(), rejection, seq: c.seq })
      })
      const gaps: Array<[number, number]> = []
      let start: number | undefined
      for (let seq = prevTop + 1; seq <= top; seq++) {
        if (!found.has(seq)) { start ??= seq; continue }
        if (start != null) { gaps.push([start, seq - 1]); start = undefined }
      }
      if (start != null) gaps.push([start, top])

      const now = Date.now()
      const added: EventEnvelope[] = []
      db.transaction(() => {
        for (const a of accepted) if (insertEvent(db, a.envelope, a.cid, now)) added.push(a.envelope)
        for (const r of chunkRejected) {
          db.run('INSERT OR IGNORE INTO quarantine (producer, path, cid, reason, detail, detected_at) VALUES (?, ?, ?, ?, ?, ?)',
            [producer, r.path, r.cid ?? null, r.rejection.reason, r.rejection.detail, now])
        }
        for (const [from, to] of gaps) {
          db.run('INSERT OR IGNORE INTO gaps (producer, from_seq, to_seq, detected_at) VALUES (?, ?, ?, ?)', [producer, from, to, now])
        }
        if (last) {
          for (const [path, cid] of walked) {
            db.run('INSERT INTO remote_dirs (producer, path, cid) VALUES (?, ?, ?) ON CONFLICT (producer, path) DO UPDATE SET cid = excluded.cid', [producer, path, cid])
          }
        }
        db.run('UPDATE producers SET processed_seq = max(processed_seq, ?), synced_root = CASE WHEN ? THEN ? ELSE synced_root END, last_error = NULL WHERE producer = ?',
          [top, last ? 1 : 0, row.head_root, producer])
      })
      prevTop = top
      for (const r of chunkRejected) this.init.onReject?.(r.rejection.reason, r.rejection.detail, { producer, path: r.path })
      for (const [from, to] of gaps) this.init.log?.('warn', `gap in ${producer}: seq ${from}..${to} is no longer in its outbox`, { producer, from_seq: from, to_seq: to })
      storeMs += performance.now() - s0
      if (added.length > 0) this.init.onIngested?.(added)
    }
    this.init.log?.('debug', `walked ${producer}: ${walked.size} directories in ${(t1 - t0).toFixed(0)} ms, ${candidates.length} files in ${chunks.length} chunk(s), waited ${fetchMs.toFixed(0)} ms for them, checked and stored in ${storeMs.toFixed(0)} ms`, { producer })
  }
}

/** Maps with at most `limit` calls under way; results in input order. */
async function mapLimit<T, R> (items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i])
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return out
}
