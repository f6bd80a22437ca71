import { uuidv7 } from 'uuidv7'
import type { PrivateKey } from '@libp2p/interface'
import type { Components } from '../node/components.ts'
import { ClockSkewError, CommitFailedError, EventTooLargeError } from '../errors.ts'
import { canonicalJson } from '../model/canonical.ts'
import type { EventEnvelope } from '../model/envelope.ts'
import { signHead, type Head } from '../model/head.ts'
import { filePlace } from '../model/layout.ts'
import type { PublishResult } from '../model/publishRequest.ts'
import { directoryBlock, fileBlock, type Block, type DirEntry } from '../unixfs/tree.ts'
import { SNAPSHOTS_DIR } from '../model/snapshot.ts'
import { CID } from 'multiformats/cid'
import { trace } from '../log/trace.ts'
import { checkBatch, checkRequest, type CheckedRequest, type PublishValidator, type RequestChecks } from './request.ts'
import { CommitQueue, type Pending } from './queue.ts'
import { OutboxTree, type TreeChange } from './tree.ts'

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
  now?: () => Date
}

/** What the outbox is built from. */
export type OutboxComponents = Pick<Components, 'self' | 'store' | 'blocks' | 'clock' | 'log' | 'metrics' | 'events'>

/** @returns a factory of this node's outbox (see Outbox) */
export function outbox(init: OutboxInit): (components: OutboxComponents) => Outbox {
  return (components) => new Outbox(components, init)
}

type Request = Pending<CheckedRequest, PublishResult>

/**
 * This node's outbox: the only subtree it writes. Publishes are group-committed: every request that
 * arrives while one commit is being written goes into the next one, which makes one new root and one head.
 * A publish resolves only after its file, the new directories and the head are durable. Each commit
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

  constructor(components: OutboxComponents, init: OutboxInit) {
    this.components = components
    this.init = init
    this.tree = new OutboxTree(components.store.outbox, components.blocks, components.log)
    this.queue = new CommitQueue({
      maxBatch: init.maxBatch,
      commit: async (batch) => {
        await this.commit(batch)
      },
      failed: (batch, e) => {
        this.tree.reset()
        const wrapped = new CommitFailedError(`Cannot publish: the commit failed, nothing of it was written: ${e.message}`, { cause: e })
        for (const p of batch) p.reject(wrapped)
      }
    })
    this.checks = {
      maxEventSize: init.maxEventSize,
      maxDepth: init.maxDepth,
      validate: init.validate,
      published: (eventId) => this.published(eventId)
    }
    const own = components.store.producers.get(components.self)
    this.lastHead = own?.head_message ?? undefined
    this.lastAcks = own?.acks ?? ''
  }

  start(): void {
    this.status = 'started'
  }

  /** Waits for the publishes already queued. */
  async stop(): Promise<void> {
    if (this.status === 'stopped') return
    this.status = 'stopping'
    await this.flush()
    this.status = 'stopped'
  }

  /** @returns the last seq this node produced */
  get seq(): number {
    return this.components.store.outbox.lastSeq()
  }

  /**
   * Publishes one event.
   *
   * @param options.reserved lets cairn's own changes (`cairn.members`) through; a backend's request may not use the namespace
   * @returns its event_id, seq and file CID, once durable; the original result for an event_id already published
   * @throws ValidationError for a bad request or payload, EventTooLargeError for an event over the limit
   */
  async publish(input: unknown, options: { reserved?: boolean } = {}): Promise<PublishResult> {
    const checked = checkRequest(input, '', options.reserved === true ? { ...this.checks, reserved: true } : this.checks)
    if ('result' in checked) return checked.result
    this.assertClock()
    return (await this.queue.enqueue([checked.request]))[0]
  }

  /**
   * Refuses to stamp events from a clock the network disagrees with: ahead, they would be held by every
   * receiver (and outrank later events were they not); behind, they would order before what they follow.
   *
   * @throws ClockSkewError (HTTP 503) while more than half of the producers watched put this clock further than --max-clock-skew off
   */
  private assertClock(): void {
    const refusal = this.components.clock.watch.stampRefusal()
    if (refusal != null) throw new ClockSkewError(`Cannot publish: ${refusal}`)
  }

  /**
   * Publishes several events in one commit: all of them, or none when one is invalid or the commit fails.
   *
   * @returns one result per input, in order, once durable (the original result for an event_id already published)
   * @throws ValidationError naming the first bad event by its index, EventTooLargeError, or for more than max-batch events
   */
  async publishMany(inputs: readonly unknown[]): Promise<PublishResult[]> {
    checkBatch(inputs, this.init.maxBatch)
    const checked = inputs.map((input, i) => checkRequest(input, `[${i}]`, this.checks))
    const requests = checked.flatMap((c) => ('request' in c ? [c.request] : []))
    if (requests.length > 0) this.assertClock()
    const committed = requests.length > 0 ? await this.queue.enqueue(requests) : []
    let next = 0
    return checked.map((c) => ('result' in c ? c.result : committed[next++]))
  }

  /** Waits until every queued publish is committed or failed. */
  async flush(): Promise<void> {
    await this.queue.flush()
  }

  /**
   * @returns the result of an event_id this node already published: its own outbox is the key, so that
   * another producer's event with the same event_id is never taken for it
   */
  private published(eventId: string): PublishResult | undefined {
    const row = this.components.store.outbox.byEventId(eventId)
    return row == null ? undefined : { event_id: row.event_id, seq: row.seq, cid: row.cid }
  }

  private async commit(batch: Request[]): Promise<void> {
    const { self, store, clock } = this.components
    const now = this.init.now?.() ?? new Date()
    let seq = this.seq
    trace('commit.started', seq + 1)
    const accepted: Array<{ p: Request; envelope: EventEnvelope; block: Block; bucket: string; name: string }> = []
    const byId = new Map<string, PublishResult>()
    const duplicates: Array<{ p: Request; id: string }> = []

    for (const p of batch) {
      const id = p.request.event_id
      const earlier = id == null ? undefined : (byId.get(id) ?? this.published(id))
      if (earlier != null) {
        p.resolve(earlier)
        continue
      }
      if (id != null && byId.has(id)) {
        duplicates.push({ p, id })
        continue
      }
      seq++
      const envelope: EventEnvelope = {
        event_id: id ?? uuidv7(),
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
    const tree = await this.tree.build(additions, new Map())
    // Blocks first, so that no head ever points at a block that is not on disk.
    this.putBlocks([...accepted.map((a) => a.block), ...tree.blocks])
    trace('commit.blocks_durable', seq)
    const receivedAt = Date.now()
    // The head, the outbox rows and the events rows commit in one durable transaction.
    await this.writeHead(seq, tree, () => {
      for (const a of accepted) {
        const cid = a.block.cid.toString()
        store.outbox.insert({ seq: a.envelope.seq, event_id: a.envelope.event_id, bucket: a.bucket, name: a.name, cid, size: a.block.bytes.length, created_at: receivedAt })
        store.events.insert(a.envelope, cid, receivedAt)
      }
    })
    trace('commit.head_durable', seq)

    for (const a of accepted) a.p.resolve(byId.get(a.envelope.event_id)!)
    for (const d of duplicates) d.p.resolve(byId.get(d.id)!)
    const events = accepted.map((a) => a.envelope)
    for (const e of events) this.components.metrics.published.inc({ type: e.type })
    this.components.events.safeDispatchEvent('outbox:committed', { detail: { head: this.lastHead!, events, blocks: [...accepted.map((a) => a.block), ...tree.blocks] } })
  }

  /** Writes blocks in one durable transaction. */
  private putBlocks(blocks: readonly Block[]): void {
    const store = this.components.blocks
    store.db.transaction(
      () => {
        for (const b of blocks) store.putSync(b.cid, b.bytes)
      },
      { durable: true }
    )
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
      this.putBlocks(tree.blocks)
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
        this.putBlocks([file, dir, ...tree.blocks])
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
      const removals = new Map<string, Set<string>>()
      const rows: Array<{ seq: number; bucket: string; name: string }> = []
      for (const seq of seqs) {
        const r = store.outbox.unpruned(seq)
        if (r == null) continue
        rows.push(r)
        removals.set(r.bucket, (removals.get(r.bucket) ?? new Set()).add(r.name))
      }
      if (rows.length === 0) return { removed: 0 }
      try {
        const tree = await this.tree.build(new Map(), removals)
        this.putBlocks(tree.blocks)
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
