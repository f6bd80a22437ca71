import type { PrivateKey } from '@libp2p/interface'
import type { Components } from '../node/components.ts'
import type { Store } from '../store/store.ts'
import { ClockSkewError, CommitFailedError, EventTooLargeError } from '../errors.ts'
import { canonicalJson } from '../model/canonical.ts'
import type { EventEnvelope } from '../model/envelope.ts'
import { signHead, type Head } from '../model/head.ts'
import { filePlace } from '../model/layout.ts'
import type { PublishResult } from '../model/publishRequest.ts'
import { directoryBlock, fileBlock, fileBlockSync, type Block, type DirEntry } from '../unixfs/tree.ts'
import { SNAPSHOTS_DIR } from '../model/snapshot.ts'
import { CID } from 'multiformats/cid'
import { trace } from '../log/trace.ts'
import { batchKey, checkBatch, checkRequest, replayOf, type CheckedRequest, type PublishedUnderKey, type PublishValidator, type RequestChecks } from './request.ts'
import { CommitQueue, type Pending } from './queue.ts'
import { OutboxTree, type TreeChange } from './tree.ts'
import { blocksDurableThrough, markBlocksDurable } from './recover.ts'
import { isDiskFullError } from '../datadir/problems.ts'

/**
 * How long the blocks of a commit may wait for blocks.db's sync. A commit's own durable transaction is
 * cairn.db's; what a power cut takes of blocks.db before this sync is rebuilt from cairn.db at the next
 * start (recover.ts), so the interval bounds only that rebuild, never what survives.
 */
const BLOCKS_SYNC_MS = 1000

/** How this node publishes. */
export interface OutboxInit {
  privateKey: PrivateKey
  /** at most this many events commit together */
  maxBatch: number
  maxEventSize: number
  maxDepth: number
  /** checks a payload against a local plugin's schema; returns the version to use and any issues */
  validate?: PublishValidator
  /** this node's acks for its heads; defaults to each producer's processed seq */
  acks?: () => Record<string, number>
  /** why this node must not publish now (its history diverged): the error a publish is refused with */
  refusal?: () => Error | undefined
  /** while publishes are held (see PublishFence), a promise of when they may go on; checked before refusal */
  held?: () => Promise<void> | undefined
  now?: () => Date
}

/** What the outbox is built from. */
export type OutboxComponents = Pick<Components, 'self' | 'store' | 'blocks' | 'clock' | 'log' | 'metrics' | 'events'>

/** @returns a factory of this node's outbox (see Outbox) */
export function outbox(init: OutboxInit): (components: OutboxComponents) => Outbox {
  return (components) => new Outbox(components, init)
}

type Request = Pending<CheckedRequest, PublishResult>

const utf8 = new TextEncoder()

/**
 * This node's outbox: the only subtree it writes. Publishes are group-committed: every request that
 * arrives while one commit is being written goes into the next one, which makes one new root and one head.
 * A publish resolves only after its file and the new directories are written and the head, with the rows
 * they are rebuilt from after a power cut (recover.ts), is durable: one fsync per commit. Each commit
 * dispatches 'outbox:committed'; a prune that changes the tree dispatches 'outbox:pruned'.
 */
export class Outbox {
  status: 'starting' | 'started' | 'stopping' | 'stopped' = 'stopped'
  private readonly components: OutboxComponents
  private readonly init: OutboxInit
  private readonly queue: CommitQueue<CheckedRequest, PublishResult>
  private readonly tree: OutboxTree
  private readonly checks: RequestChecks
  private lastHead: Uint8Array | undefined
  private lastAcks = ''
  /** files compacted out of the tree so far, as the heads say (read from the outbox table once) */
  private compactedFiles: number | undefined
  /** the pending sync of blocks.db, while commits wrote blocks that it has not synced */
  private syncTimer: ReturnType<typeof setTimeout> | undefined
  /** set by stop(): no sync is scheduled after it */
  private stopped = false
  /** the error of the last commit, while no commit succeeded after it (a full disk: status says so) */
  lastFailure: { at: string; message: string; full: boolean } | undefined

  constructor(components: OutboxComponents, init: OutboxInit) {
    this.components = components
    this.init = init
    this.tree = new OutboxTree(components.store.outbox, components.blocks, components.log)
    this.queue = new CommitQueue({
      maxBatch: init.maxBatch,
      commit: async (batch) => {
        await this.commit(batch)
        this.lastFailure = undefined
      },
      failed: (batch, e) => {
        this.tree.reset()
        this.lastFailure = { at: new Date().toISOString(), message: e.message, full: isDiskFullError(e) }
        const wrapped = new CommitFailedError(`Cannot publish: the commit failed, nothing of it was written: ${e.message}`, { cause: e })
        for (const p of batch) p.reject(wrapped)
      }
    })
    this.checks = {
      maxEventSize: init.maxEventSize,
      maxDepth: init.maxDepth,
      validate: init.validate,
      published: (key) => this.published(key)
    }
    // Without a record, every block was written by a version that synced each commit (or by none yet).
    if (blocksDurableThrough(components.store) == null) markBlocksDurable(components.store, this.seq)
    const own = components.store.producers.get(components.self)
    this.lastHead = own?.head_message ?? undefined
    this.lastAcks = own?.acks ?? ''
  }

  start(): void {
    this.status = 'started'
    this.stopped = false
  }

  /** Waits for the publishes already queued. */
  async stop(): Promise<void> {
    if (this.status === 'stopped') return
    this.status = 'stopping'
    await this.flush()
    // A clean stop leaves nothing for the next start to check.
    this.syncBlocks()
    this.stopped = true
    this.status = 'stopped'
  }

  /**
   * Runs `fn` between the outbox's writes (commits, prunes, snapshots, head refreshes), never during one:
   * a write stores its blocks before its head, so until it ends they are reachable from no stored root.
   */
  async exclusive<T>(fn: () => T): Promise<T> {
    return await this.queue.serial(async () => fn())
  }

  /** @returns the last seq this node produced */
  get seq(): number {
    return this.components.store.outbox.lastSeq()
  }

  /**
   * Publishes one event. Its idempotency key is its `event_id`, or `key` (an Idempotency-Key header).
   *
   * @param options.key the request's Idempotency-Key, for a request without an event_id of its own
   * @param options.reserved lets cairn's own changes (`cairn.members`) through; a backend's request may not use the namespace
   * @returns its event_id, seq and file CID, once durable; the first result, flagged `replayed`, for a key already published
   * @throws ValidationError for a bad request or payload, EventTooLargeError for an event over the limit,
   * IdempotencyConflictError for a key already used with a different request
   */
  async publish(input: unknown, options: { key?: string; reserved?: boolean } = {}): Promise<PublishResult> {
    const checked = checkRequest(input, '', this.checksFor(options.reserved), options.key)
    if ('result' in checked) return checked.result
    const held = this.init.held?.()
    if (held != null) await held
    this.assertMayPublish()
    return (await this.queue.enqueue([checked.request]))[0]
  }

  /** @returns the request checks, letting cairn's own reserved changes (`cairn.members`) through when `reserved` */
  private checksFor(reserved: boolean | undefined): RequestChecks {
    return reserved === true ? { ...this.checks, reserved: true } : this.checks
  }

  /**
   * Refuses a publish no peer would take (this node's history diverged: OutboxInit.refusal), and
   * events stamped from a clock the network disagrees with: ahead, they would be held by every receiver (and
   * outrank later events were they not); behind, they would order before what they follow.
   *
   * @throws the refusal's error; ClockSkewError (HTTP 503) while more than half of the producers watched put this clock further than --max-clock-skew off
   */
  private assertMayPublish(): void {
    const refused = this.init.refusal?.()
    if (refused != null) throw refused
    const refusal = this.components.clock.watch.stampRefusal()
    if (refusal != null) throw new ClockSkewError(`Cannot publish: ${refusal}`)
  }

  /**
   * Publishes several events in one commit: all of them, or none when one is invalid or the commit fails.
   * `options.reserved` lets cairn's own changes through, as publish's does, and past max-batch: that setting
   * bounds a backend's requests, and cairn's own group (a demotion's removal and add) commits whole whatever it is.
   *
   * An event without an `event_id` of its own has the key `KEY#i` under a request key `key`.
   *
   * @returns one result per input, in order, once durable (the first result, flagged `replayed`, for a key already published)
   * @throws ValidationError naming the first bad event by its index or a key repeated in the batch, EventTooLargeError,
   * or for more than max-batch events; IdempotencyConflictError for a key already used with a different request
   */
  async publishMany(inputs: readonly unknown[], key?: string, options: { reserved?: boolean } = {}): Promise<PublishResult[]> {
    checkBatch(inputs, options.reserved === true ? Math.max(this.init.maxBatch, inputs.length) : this.init.maxBatch, key)
    const checks = this.checksFor(options.reserved)
    const checked = inputs.map((input, i) => checkRequest(input, `[${i}]`, checks, key == null ? undefined : batchKey(key, i)))
    const requests = checked.flatMap((c) => ('request' in c ? [c.request] : []))
    if (requests.length > 0) {
      const held = this.init.held?.()
      if (held != null) await held
      this.assertMayPublish()
    }
    const committed = requests.length > 0 ? await this.queue.enqueue(requests) : []
    let next = 0
    return checked.map((c) => ('result' in c ? c.result : committed[next++]))
  }

  /** Waits until every queued publish is committed or failed. */
  async flush(): Promise<void> {
    await this.queue.flush()
  }

  /**
   * @returns the event this node published under an idempotency key: its own outbox is where keys are
   * kept (for as long as the data directory), so another producer's event is never taken for it
   */
  private published(key: string): PublishedUnderKey | undefined {
    const row = this.components.store.outbox.byIdempotencyKey(key)
    return row == null ? undefined : { result: { event_id: row.event_id, seq: row.seq, cid: row.cid }, hash: row.request_hash ?? undefined }
  }

  private async commit(batch: Request[]): Promise<void> {
    const { self, store, clock } = this.components
    const now = this.init.now?.() ?? new Date()
    let seq = this.seq
    trace('commit.started', seq + 1)
    const accepted: Array<{ p: Request; envelope: EventEnvelope; block: Block; bucket: string; name: string }> = []
    // Requests under one key in the same commit (concurrent retries): the first is published, the others replay it.
    const byKey = new Map<string, PublishedUnderKey>()
    const duplicates: Array<{ p: Request; key: string }> = []

    for (const p of batch) {
      const key = p.request.key
      if (key != null) {
        try {
          const earlier = replayOf(key, p.request.hash, this.published(key), '')
          if (earlier != null) {
            p.resolve(earlier)
            continue
          }
        } catch (err) {
          p.reject(err as Error)
          continue
        }
        if (byKey.has(key)) {
          duplicates.push({ p, key })
          continue
        }
      }
      seq++
      const envelope: EventEnvelope = {
        event_id: p.request.event_id,
        type: p.request.type,
        version: p.request.version,
        producer: self,
        seq,
        hlc: clock.tick(),
        occurred_at: now.toISOString(),
        actor: p.request.actor,
        correlation_id: p.request.correlation_id,
        causation_id: p.request.causation_id,
        payload: p.request.payload
      }
      // The payload was encoded once, as canonical JSON, when the request was checked.
      const bytes = utf8.encode(canonicalJson({ ...envelope, payload: p.request.payloadJson }))
      if (bytes.length > this.init.maxEventSize) {
        seq--
        p.reject(new EventTooLargeError(`Cannot publish ${envelope.type}: the event is ${bytes.length} bytes, over the limit of ${this.init.maxEventSize}`))
        continue
      }
      const block = fileBlockSync(bytes)
      const place = filePlace(seq, envelope.event_id, now)
      accepted.push({ p, envelope, block, bucket: `${place.day}/${place.hour}`, name: place.name })
      if (key != null) byKey.set(key, { result: { event_id: envelope.event_id, seq, cid: block.cid.toString() }, hash: p.request.hash })
    }
    const settleDuplicates = (): void => {
      for (const d of duplicates) {
        try {
          d.p.resolve(replayOf(d.key, d.p.request.hash, byKey.get(d.key) ?? this.published(d.key), '')!)
        } catch (err) {
          d.p.reject(err as Error)
        }
      }
    }
    if (accepted.length === 0) {
      settleDuplicates()
      return
    }

    const additions = new Map<string, DirEntry[]>()
    for (const a of accepted) {
      const entry = { name: a.name, cid: a.block.cid, size: a.block.bytes.length }
      const list = additions.get(a.bucket)
      if (list == null) additions.set(a.bucket, [entry])
      else list.push(entry)
    }
    const tree = await this.tree.build(additions, new Map())
    // Blocks first, without a sync of their own: a power cut may take them with the head surviving, and
    // the next start rebuilds them from cairn.db (recover.ts) before it serves or announces the head.
    // Only the names added here got new shards, which is what that check reads; a rebuilt bucket did not.
    this.putBlocks([...accepted.map((a) => a.block), ...tree.blocks], tree.rebuilt === true)
    trace('commit.blocks_written', seq)
    const receivedAt = Date.now()
    // The head, the outbox rows and the events rows commit in one durable transaction.
    await this.writeHead(seq, tree, () => {
      for (const a of accepted) {
        const cid = a.block.cid.toString()
        store.outbox.insert({
          seq: a.envelope.seq,
          event_id: a.envelope.event_id,
          bucket: a.bucket,
          name: a.name,
          cid,
          size: a.block.bytes.length,
          created_at: receivedAt,
          idempotency_key: a.p.request.key ?? null,
          request_hash: a.p.request.hash
        })
        store.events.insert(a.envelope, cid, receivedAt, { freshId: a.envelope.event_id !== a.p.request.key })
      }
    })
    trace('commit.head_durable', seq)
    this.scheduleSync()

    for (const a of accepted) a.p.resolve({ event_id: a.envelope.event_id, seq: a.envelope.seq, cid: a.block.cid.toString(), replayed: false })
    settleDuplicates()
    const events = accepted.map((a) => a.envelope)
    const byType = new Map<string, number>()
    for (const e of events) byType.set(e.type, (byType.get(e.type) ?? 0) + 1)
    for (const [type, n] of byType) this.components.metrics.published.inc({ type }, n)
    this.components.events.safeDispatchEvent('outbox:committed', { detail: { head: this.lastHead!, events, blocks: [...accepted.map((a) => a.block), ...tree.blocks] } })
  }

  /**
   * Writes blocks in one transaction; `durable` syncs it, and with it every block written before, so that
   * every commit so far counts as durable.
   */
  private putBlocks(blocks: readonly Block[], durable: boolean): void {
    if (blocks.length === 0) return
    this.components.blocks.putAll(blocks, { durable })
    if (durable) markBlocksDurable(this.components.store, this.seq)
  }

  private scheduleSync(): void {
    // After stop() the databases close: what a late commit wrote, the next start checks.
    if (this.syncTimer != null || this.stopped) return
    this.syncTimer = setTimeout(() => {
      this.syncTimer = undefined
      this.syncBlocks()
    }, BLOCKS_SYNC_MS)
    this.syncTimer.unref?.()
  }

  /**
   * Syncs blocks.db and records every commit so far as durable, so that the next start checks only the
   * commits after. Synchronous: no commit's blocks can be written between the sync and the record.
   *
   * @returns whether blocks.db was synced (a failure is logged, and the commits stay recorded as unsynced)
   */
  syncBlocks(): boolean {
    clearTimeout(this.syncTimer)
    this.syncTimer = undefined
    try {
      const seq = this.seq
      this.components.blocks.sync()
      markBlocksDurable(this.components.store, seq)
      return true
    } catch (err) {
      // Nothing is at risk: the commits stay recorded as unsynced (the next commit tries again), and the next start checks them.
      this.components.log.warn(`cannot sync blocks.db: ${(err as Error).message}`, { reason: 'blocks_sync_failed' })
      return false
    }
  }

  /** Signs a head for `tree` and commits it with the outbox directories and `extra` writes, in one transaction. */
  private async writeHead(seq: number, tree: TreeChange, extra: () => void, prunedPlain?: number, newlyCompacted = 0): Promise<void> {
    const { self, store, clock } = this.components
    const pruned_plain = Math.max(prunedPlain ?? 0, store.outbox.prunedPlainThrough())
    this.compactedFiles ??= store.outbox.compactedCount()
    const compacted = this.compactedFiles + newlyCompacted
    const head: Head = { producer: self, seq, root: tree.root.toString(), hlc: clock.tick(), acks: { ...this.acks(), [self]: seq }, pruned_plain, compacted }
    const signed = await signHead(head, this.init.privateKey)
    const now = Date.now()
    store.transaction(
      () => {
        extra()
        if (store.outbox.root() !== head.root) store.outbox.signed(head.root)
        for (const [path, e] of tree.updates) store.outbox.putDir(path, e == null ? undefined : { cid: e.cid.toString(), size: e.size })
        store.producers.putHead({ producer: self, seq, root: head.root, hlc: head.hlc, acks: head.acks, signed, receivedAt: now }, { root: head.root, processedSeq: seq })
      },
      { durable: true }
    )
    this.tree.apply(tree)
    this.compactedFiles = compacted
    this.lastHead = signed
    this.lastAcks = JSON.stringify(head.acks)
  }

  private acks(): Record<string, number> {
    return this.init.acks?.() ?? this.components.store.producers.processed()
  }

  /**
   * Re-signs the head when this node's acks moved since the last one (same seq and root, newer clock),
   * so that producers learn what it has processed.
   *
   * @returns the new signed head, or undefined when nothing changed
   */
  async refreshHead(): Promise<Uint8Array | undefined> {
    return await this.queue.serial(async () => {
      const seq = this.seq
      if (JSON.stringify({ ...this.acks(), [this.components.self]: seq }) === this.lastAcks) return undefined
      const root = this.tree.root
      // A node that never published still heads an empty outbox, so that its acks reach the producers.
      const tree = root != null ? { root: root.cid, blocks: [], updates: new Map() } : await this.tree.build(new Map(), new Map())
      this.putBlocks(tree.blocks, true)
      await this.writeHead(seq, tree, () => {})
      return this.lastHead
    })
  }

  /**
   * Puts a plugin's signed snapshot into the outbox tree as `snapshots/<plugin>.json` (replacing the one
   * before) and publishes the new root and head.
   *
   * @returns the snapshot file's CID and the new signed head
   */
  async putSnapshot(plugin: string, bytes: Uint8Array, vector: Record<string, number>): Promise<{ cid: string; head: Uint8Array }> {
    const written = await this.queue.serial(async () => {
      const { store } = this.components
      const file = await fileBlock(bytes)
      const files = [...store.snapshots.own().filter((s) => s.plugin !== plugin), { plugin, cid: file.cid.toString(), size: bytes.length }]
        .sort((a, b) => (a.plugin < b.plugin ? -1 : 1))
        .map((s) => ({ name: `${s.plugin}.json`, cid: CID.parse(s.cid), size: s.size }))
      const dir = await directoryBlock(files)
      try {
        const tree = await this.tree.build(new Map(), new Map(), new Map([[SNAPSHOTS_DIR, { name: SNAPSHOTS_DIR, cid: dir.cid, size: dir.size }]]))
        // A snapshot file cannot be rebuilt from cairn.db: synced before the head that points at it.
        this.putBlocks([file, dir, ...tree.blocks], true)
        await this.writeHead(this.seq, tree, () => {
          store.snapshots.putOwn(plugin, file.cid.toString(), bytes.length, vector, Date.now())
        })
      } catch (err) {
        this.tree.reset()
        throw err
      }
      return { cid: file.cid.toString(), head: this.lastHead! }
    })
    this.components.events.safeDispatchEvent('outbox:pruned', { detail: { head: written.head, removed: 0 } })
    return written
  }

  /**
   * Withdraws event files this node stamped too far ahead (cairn reclock, on a stopped node): removes them from the
   * tree as a plain prune does (the head's `pruned_plain` covers them, so a peer that had not taken them records a
   * lost gap and takes what follows), drops the own snapshots of `snapshots` (their tables hold those events), and
   * signs a new head stamped by this node's clock, even when nothing else changes, so that a head stamped ahead is
   * replaced. The seqs are never used again: their outbox rows stay, marked withdrawn, and their idempotency keys
   * are freed in the same transaction (OutboxTable.markWithdrawn): a retry under one publishes the event anew.
   * `extra` runs in the head's transaction.
   *
   * @returns the new signed head
   */
  async withdraw(seqs: readonly number[], snapshots: readonly string[], extra: () => void): Promise<{ head: Uint8Array; hlc: string }> {
    return await this.queue.serial(async () => {
      const { store } = this.components
      const { rows, removals } = removalsOf(store, seqs)
      const dropped = new Set(snapshots)
      const own = store.snapshots.own()
      const kept = own.filter((s) => !dropped.has(s.plugin))
      const rootEntries = new Map<string, DirEntry | null>()
      const blocks: Block[] = []
      if (kept.length < own.length) {
        if (kept.length === 0) rootEntries.set(SNAPSHOTS_DIR, null)
        else {
          const dir = await directoryBlock(kept.map((s) => ({ name: `${s.plugin}.json`, cid: CID.parse(s.cid), size: s.size })))
          blocks.push(dir)
          rootEntries.set(SNAPSHOTS_DIR, { name: SNAPSHOTS_DIR, cid: dir.cid, size: dir.size })
        }
      }
      try {
        const tree = await this.tree.build(new Map(), removals, rootEntries)
        this.putBlocks([...blocks, ...tree.blocks], true)
        const plain = rows.reduce((m, r) => Math.max(m, r.seq), 0)
        await this.writeHead(
          this.seq,
          tree,
          () => {
            const at = Date.now()
            for (const r of rows) store.outbox.markWithdrawn(r.seq, at)
            for (const plugin of dropped) store.snapshots.deleteOwn(plugin)
            extra()
          },
          plain
        )
      } catch (err) {
        this.tree.reset()
        throw err
      }
      const head = this.lastHead!
      return { head, hlc: store.producers.get(this.components.self)?.head_hlc ?? '' }
    })
  }

  /**
   * Removes event files from the outbox and publishes the new root and head, then dispatches
   * 'outbox:pruned'. The rows of `events` stay. The head's `pruned_plain` covers every seq removed that is
   * not in `compacted` (those newer events superseded).
   *
   * @returns how many files were removed and the new signed head
   */
  async prune(seqs: readonly number[], compacted: ReadonlySet<number> = new Set()): Promise<{ removed: number; head?: Uint8Array }> {
    if (seqs.length === 0) return { removed: 0 }
    const pruned = await this.queue.serial(async () => {
      const { store } = this.components
      const { rows, removals } = removalsOf(store, seqs)
      if (rows.length === 0) return { removed: 0 }
      try {
        const tree = await this.tree.build(new Map(), removals)
        // A removal changes shards the startup check does not read: synced before the head.
        this.putBlocks(tree.blocks, true)
        const plain = rows.filter((r) => !compacted.has(r.seq)).reduce((m, r) => Math.max(m, r.seq), 0)
        await this.writeHead(
          this.seq,
          tree,
          () => {
            for (const r of rows) store.outbox.markPruned(r.seq, Date.now(), compacted.has(r.seq))
          },
          plain,
          rows.filter((r) => compacted.has(r.seq)).length
        )
      } catch (err) {
        this.tree.reset()
        throw err
      }
      return { removed: rows.length, head: this.lastHead }
    })
    if (pruned.head != null) this.components.events.safeDispatchEvent('outbox:pruned', { detail: { head: pruned.head, removed: pruned.removed } })
    return pruned
  }
}

/** @returns the files of `seqs` still in the tree, and the names to remove from each hour bucket */
function removalsOf(store: Store, seqs: readonly number[]): { rows: Array<{ seq: number; bucket: string; name: string }>; removals: Map<string, Set<string>> } {
  const removals = new Map<string, Set<string>>()
  const rows: Array<{ seq: number; bucket: string; name: string }> = []
  for (const seq of seqs) {
    const r = store.outbox.unpruned(seq)
    if (r == null) continue
    rows.push(r)
    removals.set(r.bucket, (removals.get(r.bucket) ?? new Set()).add(r.name))
  }
  return { rows, removals }
}
