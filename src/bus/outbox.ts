import * as v from 'valibot'
import { uuidv7 } from 'uuidv7'
import { CID } from 'multiformats/cid'
import type { PrivateKey } from '@libp2p/interface'
import type { SqlDatabase } from '../runtime/sqlite.ts'
import type { SqliteBlockstore } from '../store/blockstore.ts'
import { ValidationError } from '../errors.ts'
import { formatIssues } from '../schema/issues.ts'
import { canonicalJson, jsonDepth } from './canonical.ts'
import type { EventEnvelope } from './envelope.ts'
import { currentAcks, insertEvent } from './eventsTable.ts'
import { signHead, type Head } from './head.ts'
import type { HybridClock } from './hlc.ts'
import { filePlace } from './layout.ts'
import { PublishRequestSchema, type PublishRequest, type PublishResult } from './publishRequest.ts'
import { directoryBlock, fileBlock, type Block, type DirEntry } from './tree.ts'
import { shardedDirectory } from './hamt.ts'

/** Raised when an event is larger than the limit; the HTTP endpoint answers 413. */
export class EventTooLargeError extends Error {
  static name = 'EventTooLargeError'
  constructor (message: string) {
    super(message)
    this.name = 'EventTooLargeError'
  }
}

export interface OutboxInit {
  db: SqlDatabase
  blocks: SqliteBlockstore
  producer: string
  privateKey: PrivateKey
  clock: HybridClock
  maxBatch: number
  maxEventSize: number
  maxDepth: number
  /** checks a payload against a local plugin's schema; returns the version to use and any issues */
  validate?: (type: string, version: number | undefined, payload: unknown) => { version: number, issues: string[] }
  /** called after each durable commit with the new signed head and the new events */
  onCommit?: (signedHead: Uint8Array, events: EventEnvelope[]) => void
  now?: () => Date
}

interface Pending {
  request: PublishRequest & { version: number }
  resolve: (r: PublishResult) => void
  reject: (e: Error) => void
}

/**
 * This node's outbox: the only subtree it writes. Publishes are group-committed: every request that
 * arrives while one commit is being written goes into the next one, which makes one new root and one head.
 * A publish resolves only after its file, the new directories and the head are durable.
 */
export class Outbox {
  private readonly init: OutboxInit
  private queue: Pending[] = []
  private committing: Promise<void> | undefined
  private readonly dirs = new Map<string, DirEntry>()

  constructor (init: OutboxInit) {
    this.init = init
    for (const r of init.db.all<{ path: string, cid: string, size: number }>('SELECT path, cid, size FROM outbox_dirs')) {
      this.dirs.set(r.path, { name: r.path.split('/').at(-1) ?? '', cid: CID.parse(r.cid), size: r.size })
    }
  }

  /** @returns the last seq this node produced */
  get seq (): number {
    return this.init.db.get<{ s: number | null }>('SELECT max(seq) AS s FROM outbox')?.s ?? 0
  }

  /**
   * Publishes one event.
   *
   * @returns its event_id, seq and file CID, once durable; the original result for an event_id already published
   * @throws ValidationError for a bad request or payload, EventTooLargeError for an event over the limit
   */
  async publish (input: unknown): Promise<PublishResult> {
    const r = v.safeParse(PublishRequestSchema, input)
    if (!r.success) {
      const issues = formatIssues(r.issues)
      throw new ValidationError(`Cannot publish: ${issues.join('; ')}`, issues)
    }
    const req = r.output
    const existing = this.lookup(req.event_id)
    if (existing != null) return existing
    const depth = jsonDepth(req.payload)
    if (depth > this.init.maxDepth) {
      throw new ValidationError(`Cannot publish: payload nests ${depth} levels, over the limit of ${this.init.maxDepth}`, [`payload: nests ${depth} levels, over the limit of ${this.init.maxDepth}`])
    }
    const checked = this.init.validate?.(req.type, req.version, req.payload) ?? { version: req.version ?? 1, issues: [] }
    if (checked.issues.length > 0) {
      throw new ValidationError(`Cannot publish ${req.type}: ${checked.issues.join('; ')}`, checked.issues)
    }
    const size = new TextEncoder().encode(canonicalJson(req.payload)).length
    if (size + 600 > this.init.maxEventSize) {
      throw new EventTooLargeError(`Cannot publish ${req.type}: the event would be over ${this.init.maxEventSize} bytes (payload alone is ${size} bytes)`)
    }
    return await new Promise<PublishResult>((resolve, reject) => {
      this.queue.push({ request: { ...req, version: checked.version }, resolve, reject })
      this.kick()
    })
  }

  /** Waits until every queued publish is committed or failed. */
  async flush (): Promise<void> {
    while (this.committing != null) await this.committing
  }

  private kick (): void {
    if (this.committing != null) return
    this.committing = (async () => {
      // Let every request that arrives in this tick join the batch.
      await Promise.resolve()
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.init.maxBatch)
        try {
          await this.commit(batch)
        } catch (err) {
          const e = err as Error
          const wrapped = new Error(`Cannot publish: the commit failed, nothing of it was written: ${e.message}`)
          for (const p of batch) p.reject(wrapped)
        }
      }
    })().finally(() => { this.committing = undefined })
  }

  private lookup (eventId: string | undefined): PublishResult | undefined {
    if (eventId == null) return undefined
    const row = this.init.db.get<PublishResult>('SELECT event_id, seq, cid FROM events WHERE event_id = ?', [eventId])
    return row == null ? undefined : { event_id: row.event_id, seq: row.seq, cid: row.cid }
  }

  private async commit (batch: Pending[]): Promise<void> {
    const { db, blocks, producer } = this.init
    const now = this.init.now?.() ?? new Date()
    let seq = this.seq
    const accepted: Array<{ p: Pending, envelope: EventEnvelope, block: Block, bucket: string, name: string }> = []
    const byId = new Map<string, PublishResult>()
    const duplicates: Array<{ p: Pending, id: string }> = []

    for (const p of batch) {
      const id = p.request.event_id
      const earlier = id == null ? undefined : (byId.get(id) ?? this.lookup(id))
      if (earlier != null) { p.resolve(earlier); continue }
      if (id != null && byId.has(id)) { duplicates.push({ p, id }); continue }
      seq++
      const envelope: EventEnvelope = {
        event_id: id ?? uuidv7(),
        type: p.request.type,
        version: p.request.version,
        producer,
        seq,
        hlc: this.init.clock.tick(),
        occurred_at: now.toISOString(),
        actor: p.request.actor,
        correlation_id: p.request.correlation_id,
        causation_id: p.request.causation_id,
        payload: p.request.payload
      }
      const bytes = new TextEncoder().encode(canonicalJson(envelope))
      if (bytes.length > this.init.maxEventSize) {
        seq--
        p.reject(new EventTooLargeError(`Cannot publish ${envelope.type}: the event is ${bytes.length} bytes, over the limit of ${this.init.maxEventSize}`))
        continue
      }
      const block = await fileBlock(bytes)
      const place = filePlace(seq, envelope.event_id, now)
      accepted.push({ p, envelope, block, bucket: `${place.day}/${place.hour}`, name: place.name })
      byId.set(envelope.event_id, { event_id: envelope.event_id, seq, cid: block.cid.toString() })
    }
    if (accepted.length === 0) {
      for (const d of duplicates) d.p.resolve(byId.get(d.id)!)
      return
    }

    // New directories: the touched hour buckets, their days, the root.
    const newBlocks: Block[] = accepted.map((a) => a.block)
    const dirUpdates = new Map<string, DirEntry>()
    const touched = new Map<string, typeof accepted>()
    for (const a of accepted) touched.set(a.bucket, [...(touched.get(a.bucket) ?? []), a])
    const touchedDays = new Set<string>()
    for (const [bucket, items] of touched) {
      const entries: DirEntry[] = db.all<{ name: string, cid: string, size: number }>('SELECT name, cid, size FROM outbox WHERE bucket = ?', [bucket])
        .map((r) => ({ name: r.name, cid: CID.parse(r.cid), size: r.size }))
      for (const a of items) entries.push({ name: a.name, cid: a.block.cid, size: a.block.bytes.length })
      // Hour buckets are HAMT-sharded: a reader fetches only the shards that changed.
      const { root: dir, blocks: shards } = await shardedDirectory(entries)
      newBlocks.push(...shards)
      dirUpdates.set(bucket, { name: bucket.slice(11), cid: dir.cid, size: dir.size })
      touchedDays.add(bucket.slice(0, 10))
    }
    const dirs = new Map([...this.dirs, ...dirUpdates])
    for (const day of touchedDays) {
      const hours = [...dirs].filter(([path]) => path.startsWith(`${day}/`)).map(([, e]) => e)
      const dir = await directoryBlock(hours)
      newBlocks.push(dir)
      dirUpdates.set(day, { name: day, cid: dir.cid, size: dir.size })
      dirs.set(day, dirUpdates.get(day)!)
    }
    const days = [...dirs].filter(([path]) => path !== '' && !path.includes('/')).map(([, e]) => e)
    const root = await directoryBlock(days)
    newBlocks.push(root)
    dirUpdates.set('', { name: '', cid: root.cid, size: root.size })

    // Blocks first, so that no head ever points at a block that is not on disk.
    blocks.db.transaction(() => {
      for (const b of newBlocks) blocks.putSync(b.cid, b.bytes)
    })
    const head: Head = { producer, seq, root: root.cid.toString(), hlc: this.init.clock.tick(), acks: { ...currentAcks(db), [producer]: seq } }
    const signed = await signHead(head, this.init.privateKey)
    const receivedAt = Date.now()
    db.transaction(() => {
      for (const a of accepted) {
        db.run('INSERT INTO outbox (seq, event_id, bucket, name, cid, size, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
          [a.envelope.seq, a.envelope.event_id, a.bucket, a.name, a.block.cid.toString(), a.block.bytes.length, receivedAt])
        insertEvent(db, a.envelope, a.block.cid.toString(), receivedAt)
      }
      for (const [path, e] of dirUpdates) {
        db.run('INSERT INTO outbox_dirs (path, cid, size) VALUES (?, ?, ?) ON CONFLICT (path) DO UPDATE SET cid = excluded.cid, size = excluded.size', [path, e.cid.toString(), e.size])
      }
      db.run(`INSERT INTO producers (producer, head_seq, head_root, head_hlc, head_message, head_received_at, acks, synced_root, processed_seq)
              VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
              ON CONFLICT (producer) DO UPDATE SET head_seq = excluded.head_seq, head_root = excluded.head_root, head_hlc = excluded.head_hlc,
                head_message = excluded.head_message, head_received_at = excluded.head_received_at, acks = excluded.acks,
                synced_root = excluded.synced_root, processed_seq = excluded.processed_seq`,
      [producer, seq, head.root, head.hlc, signed, receivedAt, JSON.stringify(head.acks), head.root, seq])
    })
    for (const [path, e] of dirUpdates) this.dirs.set(path, e)

    for (const a of accepted) a.p.resolve(byId.get(a.envelope.event_id)!)
    for (const d of duplicates) d.p.resolve(byId.get(d.id)!)
    this.init.onCommit?.(signed, accepted.map((a) => a.envelope))
  }
}
