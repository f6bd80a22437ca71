import * as v from 'valibot'
import { uuidv7 } from 'uuidv7'
import { CID } from 'multiformats/cid'
import type { PrivateKey } from '@libp2p/interface'
import type { SqlDatabase } from '../runtime/sqlite.ts'
import type { SqliteBlockstore } from '../store/blockstore.ts'
import { ValidationError } from '../errors.ts'
import { formatIssues } from '../model/issues.ts'
import { canonicalJson, jsonDepth } from '../model/canonical.ts'
import type { EventEnvelope } from '../model/envelope.ts'
import { insertEvent } from '../store/events.ts'
import { ProducersTable } from '../store/producers.ts'
import { signHead, type Head } from '../model/head.ts'
import type { HybridClock } from '../model/hlc.ts'
import { filePlace } from '../model/layout.ts'
import { PublishRequestSchema, type PublishRequest, type PublishResult } from '../model/publishRequest.ts'
import { directoryBlock, fileBlock, type Block, type DirEntry } from '../unixfs/tree.ts'
import { ShardedDirectory } from '../unixfs/hamt.ts'
import { trace } from '../log/trace.ts'
import { CommitFailedError, EventTooLargeError, ShardUnreadableError } from '../errors.ts'

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
  /** this node's acks for its heads; defaults to each producer's processed seq */
  acks?: () => Record<string, number>
  /** called after each durable commit with the new signed head, the new events, and the commit's new blocks */
  onCommit?: (signedHead: Uint8Array, events: EventEnvelope[], blocks: Block[]) => void
  now?: () => Date
  log?: (level: 'debug' | 'info' | 'warn' | 'error', msg: string) => void
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
  /** groups of requests, each committed whole (a batch request is one group) */
  private queue: Pending[][] = []
  private committing: Promise<void> | undefined
  private readonly dirs = new Map<string, DirEntry>()
  private tail: Promise<void> = Promise.resolve()
  private readonly buckets = new Map<string, ShardedDirectory>()
  private lastHead: Uint8Array | undefined
  private lastAcks = ''

  constructor (init: OutboxInit) {
    this.init = init
    for (const r of init.db.all<{ path: string, cid: string, size: number }>('SELECT path, cid, size FROM outbox_dirs')) {
      this.dirs.set(r.path, { name: r.path.split('/').at(-1) ?? '', cid: CID.parse(r.cid), size: r.size })
    }
    const own = init.db.get<{ head_message: Uint8Array | null, acks: string }>('SELECT head_message, acks FROM producers WHERE producer = ?', [init.producer])
    this.lastHead = own?.head_message ?? undefined
    this.lastAcks = own?.acks ?? ''
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
    const prepared = this.prepare(input, '')
    if ('result' in prepared) return prepared.result
    return (await this.enqueue([prepared.request]))[0]
  }

  /**
   * Publishes several events in one commit: all of them, or none when one is invalid or the commit fails.
   *
   * @returns one result per input, in order, once durable (the original result for an event_id already published)
   * @throws ValidationError naming the first bad event by its index, EventTooLargeError, or for more than max-batch events
   */
  async publishMany (inputs: readonly unknown[]): Promise<PublishResult[]> {
    if (inputs.length === 0) throw new ValidationError('Cannot publish: the batch is empty', ['[]: expected at least one event'])
    if (inputs.length > this.init.maxBatch) {
      throw new EventTooLargeError(`Cannot publish ${inputs.length} events in one request: at most ${this.init.maxBatch} (the max-batch setting) commit together`)
    }
    const prepared = inputs.map((input, i) => this.prepare(input, `[${i}]`))
    const requests = prepared.flatMap((p) => 'request' in p ? [p.request] : [])
    const committed = requests.length > 0 ? await this.enqueue(requests) : []
    let next = 0
    return prepared.map((p) => 'result' in p ? p.result : committed[next++])
  }

  /**
   * Checks one publish request. `at` names it in messages ('' alone, '[i]' in a batch).
   *
   * @returns the request to commit, or the result of an event_id already published
   */
  private prepare (input: unknown, at: string): { request: PublishRequest & { version: number } } | { result: PublishResult } {
    const which = at === '' ? '' : ` event ${at}`
    const prefix = (issues: string[]): string[] => at === '' ? issues : issues.map((i) => `${at}.${i}`)
    const r = v.safeParse(PublishRequestSchema, input)
    if (!r.success) {
      const issues = prefix(formatIssues(r.issues))
      throw new ValidationError(`Cannot publish${which}: ${issues.join('; ')}`, issues)
    }
    const req = r.output
    const existing = this.lookup(req.event_id)
    if (existing != null) return { result: existing }
    const depth = jsonDepth(req.payload, this.init.maxDepth)
    if (depth > this.init.maxDepth) {
      const issues = prefix([`payload: nests more than ${this.init.maxDepth} levels`])
      throw new ValidationError(`Cannot publish${which}: payload nests more than ${this.init.maxDepth} levels`, issues)
    }
    const checked = this.init.validate?.(req.type, req.version, req.payload) ?? { version: req.version ?? 1, issues: [] }
    if (checked.issues.length > 0) {
      const issues = prefix(checked.issues)
      throw new ValidationError(`Cannot publish${which} ${req.type}: ${issues.join('; ')}`, issues)
    }
    const size = new TextEncoder().encode(canonicalJson(req.payload)).length
    if (size + 600 > this.init.maxEventSize) {
      throw new EventTooLargeError(`Cannot publish${which} ${req.type}: the event would be over ${this.init.maxEventSize} bytes (payload alone is ${size} bytes)`)
    }
    return { request: { ...req, version: checked.version } }
  }

  /** Queues requests to be committed together; @returns their results once durable */
  private async enqueue (requests: Array<PublishRequest & { version: number }>): Promise<PublishResult[]> {
    return await new Promise<PublishResult[]>((resolve, reject) => {
      const results = new Array<PublishResult>(requests.length)
      let left = requests.length
      let failed = false
      const group = requests.map((request, i): Pending => ({
        request,
        resolve: (r) => { results[i] = r; if (--left === 0 && !failed) resolve(results) },
        reject: (e) => { if (!failed) { failed = true; reject(e) } }
      }))
      this.queue.push(group)
      this.kick()
    })
  }

  /** Waits until every queued publish is committed or failed. */
  async flush (): Promise<void> {
    while (this.committing != null) await this.committing
  }

  private kick (): void {
    if (this.committing != null) return
    this.committing = this.serial(async () => {
      while (this.queue.length > 0) {
        // SQLite's writes block the event loop: yield a turn so that the requests that arrived meanwhile
        // (sockets ready to read) are parsed and join this batch, instead of trickling into tiny commits.
        await new Promise((resolve) => setImmediate(resolve))
        const batch = this.nextBatch()
        try {
          await this.commit(batch)
        } catch (err) {
          const e = err as Error
          // The in-memory buckets may hold what was not written: reload them from the table.
          this.buckets.clear()
          const wrapped = new CommitFailedError(`Cannot publish: the commit failed, nothing of it was written: ${e.message}`, { cause: e })
          for (const p of batch) p.reject(wrapped)
        }
      }
    }).finally(() => {
      this.committing = undefined
      // A publish that arrived after the loop saw an empty queue, but before this, would wait forever.
      if (this.queue.length > 0) this.kick()
    })
  }

  /** @returns whole groups from the queue, up to max-batch events (at least one group) */
  private nextBatch (): Pending[] {
    const batch: Pending[] = []
    while (this.queue.length > 0 && (batch.length === 0 || batch.length + this.queue[0].length <= this.init.maxBatch)) batch.push(...this.queue.shift()!)
    return batch
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
    trace('commit.started', seq + 1)
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

    const additions = new Map<string, DirEntry[]>()
    for (const a of accepted) additions.set(a.bucket, [...(additions.get(a.bucket) ?? []), { name: a.name, cid: a.block.cid, size: a.block.bytes.length }])
    const tree = await this.buildTree(additions, new Map())
    // Blocks first, so that no head ever points at a block that is not on disk.
    blocks.db.transaction(() => {
      for (const a of accepted) blocks.putSync(a.block.cid, a.block.bytes)
      for (const b of tree.blocks) blocks.putSync(b.cid, b.bytes)
    }, { durable: true })
    trace('commit.blocks_durable', seq)
    const receivedAt = Date.now()
    await this.writeHead(seq, tree, () => {
      for (const a of accepted) {
        db.run('INSERT INTO outbox (seq, event_id, bucket, name, cid, size, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
          [a.envelope.seq, a.envelope.event_id, a.bucket, a.name, a.block.cid.toString(), a.block.bytes.length, receivedAt])
        insertEvent(db, a.envelope, a.block.cid.toString(), receivedAt)
      }
    })

    for (const a of accepted) a.p.resolve(byId.get(a.envelope.event_id)!)
    for (const d of duplicates) d.p.resolve(byId.get(d.id)!)
    this.init.onCommit?.(this.lastHead!, accepted.map((a) => a.envelope), [...accepted.map((a) => a.block), ...tree.blocks])
  }

  /**
   * Rebuilds the touched hour buckets (entries added, names removed), their days and the root.
   * An emptied bucket, and an emptied day, go away.
   */
  private async buildTree (additions: Map<string, DirEntry[]>, removals: Map<string, Set<string>>): Promise<Tree> {
    const blocks: Block[] = []
    const updates = new Map<string, DirEntry | null>()
    const touchedDays = new Set<string>()
    for (const bucket of new Set([...additions.keys(), ...removals.keys()])) {
      const change = (dir: ShardedDirectory): ShardedDirectory => {
        dir.remove(removals.get(bucket) ?? [])
        dir.add(additions.get(bucket) ?? [])
        return dir
      }
      let dir: ShardedDirectory
      try {
        dir = change(this.bucketDir(bucket))
      } catch (err) {
        if (!(err instanceof ShardUnreadableError)) throw err
        // The stored bucket cannot be read back (blocks restored from an older backup, or a bucket an
        // older version wrote with another fanout): build it again from the outbox table.
        this.init.log?.('warn', `rebuilding outbox bucket ${bucket} from the outbox table: ${err.message}`)
        dir = change(this.bucketDir(bucket, true))
      }
      touchedDays.add(bucket.slice(0, 10))
      if (dir.size === 0) { updates.set(bucket, null); continue }
      // Hour buckets are HAMT-sharded: a reader fetches only the shards that changed.
      const { root, blocks: shards } = await dir.flush()
      blocks.push(...shards)
      updates.set(bucket, { name: bucket.slice(11), cid: root.cid, size: root.size })
    }
    const dirs = new Map(this.dirs)
    for (const [path, e] of updates) { if (e == null) dirs.delete(path); else dirs.set(path, e) }
    for (const day of touchedDays) {
      const hours = [...dirs].filter(([path]) => path.startsWith(`${day}/`)).map(([, e]) => e)
      if (hours.length === 0) { updates.set(day, null); dirs.delete(day); continue }
      const dir = await directoryBlock(hours)
      blocks.push(dir)
      updates.set(day, { name: day, cid: dir.cid, size: dir.size })
      dirs.set(day, updates.get(day)!)
    }
    const days = [...dirs].filter(([path]) => path !== '' && !path.includes('/')).map(([, e]) => e)
    const root = await directoryBlock(days)
    blocks.push(root)
    updates.set('', { name: '', cid: root.cid, size: root.size })
    return { root: root.cid, blocks, updates }
  }

  /** Signs a head for `tree` and commits it with the outbox directories and `extra` writes, in one transaction. */
  private async writeHead (seq: number, tree: Tree, extra: () => void): Promise<void> {
    const { db, producer } = this.init
    const head: Head = { producer, seq, root: tree.root.toString(), hlc: this.init.clock.tick(), acks: { ...this.acks(), [producer]: seq } }
    const signed = await signHead(head, this.init.privateKey)
    const now = Date.now()
    db.transaction(() => {
      extra()
      for (const [path, e] of tree.updates) {
        if (e == null) db.run('DELETE FROM outbox_dirs WHERE path = ?', [path])
        else db.run('INSERT INTO outbox_dirs (path, cid, size) VALUES (?, ?, ?) ON CONFLICT (path) DO UPDATE SET cid = excluded.cid, size = excluded.size', [path, e.cid.toString(), e.size])
      }
      db.run(`INSERT INTO producers (producer, head_seq, head_root, head_hlc, head_message, head_received_at, acks, synced_root, processed_seq)
              VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
              ON CONFLICT (producer) DO UPDATE SET head_seq = excluded.head_seq, head_root = excluded.head_root, head_hlc = excluded.head_hlc,
                head_message = excluded.head_message, head_received_at = excluded.head_received_at, acks = excluded.acks,
                synced_root = excluded.synced_root, processed_seq = excluded.processed_seq`,
      [producer, seq, head.root, head.hlc, signed, now, JSON.stringify(head.acks), head.root, seq])
    }, { durable: true })
    for (const [path, e] of tree.updates) { if (e == null) this.dirs.delete(path); else this.dirs.set(path, e) }
    this.lastHead = signed
    this.lastAcks = JSON.stringify(head.acks)
  }

  private acks (): Record<string, number> {
    return this.init.acks?.() ?? new ProducersTable(this.init.db).processed()
  }

  /**
   * Re-signs the head when this node's acks moved since the last one (same seq and root, newer clock),
   * so that producers learn what it has processed.
   *
   * @returns the new signed head, or undefined when nothing changed
   */
  async refreshHead (): Promise<Uint8Array | undefined> {
    return await this.serial(async () => {
      const seq = this.seq
      if (JSON.stringify({ ...this.acks(), [this.init.producer]: seq }) === this.lastAcks) return undefined
      const root = this.dirs.get('')
      // A node that never published still heads an empty outbox, so that its acks reach the producers.
      const tree = root != null ? { root: root.cid, blocks: [], updates: new Map() } : await this.buildTree(new Map(), new Map())
      this.init.blocks.db.transaction(() => { for (const b of tree.blocks) this.init.blocks.putSync(b.cid, b.bytes) }, { durable: true })
      await this.writeHead(seq, tree, () => {})
      return this.lastHead
    })
  }

  /**
   * Removes event files from the outbox and publishes the new root and head. The rows of `events` stay.
   *
   * @returns how many files were removed and the new signed head
   */
  async prune (seqs: readonly number[]): Promise<{ removed: number, head?: Uint8Array }> {
    if (seqs.length === 0) return { removed: 0 }
    return await this.serial(async () => {
      const { db, blocks } = this.init
      const removals = new Map<string, Set<string>>()
      const rows: Array<{ seq: number, bucket: string, name: string }> = []
      for (const seq of seqs) {
        const r = db.get<{ seq: number, bucket: string, name: string }>('SELECT seq, bucket, name FROM outbox WHERE seq = ? AND pruned_at IS NULL', [seq])
        if (r == null) continue
        rows.push(r)
        removals.set(r.bucket, (removals.get(r.bucket) ?? new Set()).add(r.name))
      }
      if (rows.length === 0) return { removed: 0 }
      try {
        const tree = await this.buildTree(new Map(), removals)
        blocks.db.transaction(() => { for (const b of tree.blocks) blocks.putSync(b.cid, b.bytes) }, { durable: true })
        await this.writeHead(this.seq, tree, () => {
          for (const r of rows) db.run('UPDATE outbox SET pruned_at = ? WHERE seq = ?', [Date.now(), r.seq])
        })
      } catch (err) {
        this.buckets.clear()
        throw err
      }
      return { removed: rows.length, head: this.lastHead }
    })
  }

  /**
   * @returns the HAMT of an hour bucket, opened at its stored root on first use (its shards are read
   * back from the block store as commits touch them); `rebuild` builds it from the outbox table instead.
   * The few most recently used stay open: commits touch the current hour.
   */
  private bucketDir (bucket: string, rebuild = false): ShardedDirectory {
    let dir = rebuild ? undefined : this.buckets.get(bucket)
    if (dir == null) {
      const { db, blocks } = this.init
      const read = (cid: CID): Uint8Array | undefined => blocks.getSync(cid)
      const stored = this.dirs.get(bucket)
      if (stored != null && !rebuild) {
        const count = db.get<{ n: number }>('SELECT count(*) AS n FROM outbox WHERE bucket = ? AND pruned_at IS NULL', [bucket])?.n ?? 0
        dir = new ShardedDirectory({ root: stored, count, read })
      } else {
        dir = new ShardedDirectory({ read })
        dir.add(db.all<{ name: string, cid: string, size: number }>('SELECT name, cid, size FROM outbox WHERE bucket = ? AND pruned_at IS NULL', [bucket])
          .map((r) => ({ name: r.name, cid: CID.parse(r.cid), size: r.size })))
      }
    }
    this.buckets.delete(bucket)
    this.buckets.set(bucket, dir)
    for (const old of [...this.buckets.keys()].slice(0, Math.max(0, this.buckets.size - 4))) this.buckets.delete(old)
    return dir
  }

  /** Runs `fn` after every commit or prune before it: they never interleave. */
  private async serial<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn)
    this.tail = run.then(() => {}, () => {})
    return await run
  }
}

interface Tree {
  root: CID
  blocks: Block[]
  /** outbox_dirs changes: path → new entry, or null when it went away */
  updates: Map<string, DirEntry | null>
}
