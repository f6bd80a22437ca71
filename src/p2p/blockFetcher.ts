import type { PeerId } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import type { Components } from '../node/components.ts'
import { collect, type StoredBlock } from '../store/blockstore.ts'
import { trace } from '../log/trace.ts'
import { pooledMap } from '../util/pool.ts'
import { announceWanted, type AnnouncingBroker } from './announce.ts'
import { MAX_BATCH, type BlockExchange } from './blockExchange.ts'
import type { CairnIpfs } from './ipfs.ts'

/** Blocks hints carried are held in memory only, up to this many bytes, for the walk that follows. */
const HINTED_BYTES = 2 * 1024 * 1024
/** Bulk batches in flight at once: some are answered while others' blocks are checked and stored. */
const BATCHES_IN_FLIGHT = 4
/** A walk's blocks taken from memory are stored at the latest once they are this many, in one transaction. */
export const WALK_BATCH_BLOCKS = 256
/** …or before they would pass this many bytes (a transaction holds more only for one larger block alone). */
export const WALK_BATCH_BYTES = 1024 * 1024
/**
 * The bytes all walks together hold unstored at most: a walk that would pass it stores what it holds.
 * One walk runs per producer, so without it the bound would be WALK_BATCH_BYTES times the producers tracked.
 */
export const WALK_PENDING_BYTES = 4 * 1024 * 1024
/** …and at most this many blocks (tiny blocks are counted by number, not by their few bytes). */
export const WALK_PENDING_BLOCKS = 4 * WALK_BATCH_BLOCKS

export interface BlockFetcherInit {
  ipfs: CairnIpfs
  exchange: BlockExchange
  /** how long one batch of the blocks protocol may take is four times this */
  fetchTimeout: number
}

export type BlockFetcherComponents = Pick<Components, 'blocks' | 'log' | 'events'>

/**
 * Where sync gets blocks: the blocks the latest hints carried, the local store, batches over the blocks
 * protocol, and bitswap. Every block written to the store by another path than bitswap goes through
 * `stored()`, which ends this node's own fetches of it and tells bitswap of those a peer wants.
 * A hinted block is written to the store only when a walk reads it, that is when the root of a head
 * that intake accepted reaches it: what a hint carries beyond that never touches the disk.
 */
export class BlockFetcher {
  private readonly init: BlockFetcherInit
  private readonly components: BlockFetcherComponents
  /** per CID, the network fetches that a block stored by another path (a hint, a bulk batch) ends */
  private readonly fetching = new Map<string, Set<() => void>>()
  /** the blocks the latest hints carried: the walks they start read them next, from here */
  private readonly hinted = new Map<string, Uint8Array>()
  private hintedBytes = 0
  /** hinted blocks a walk took this turn: written together, in one transaction, before the walk goes on */
  private taken: Array<{ cid: CID; bytes: Uint8Array }> = []
  /** the batches of the walks under way (one per walk, until it ends) */
  private readonly walks = new Set<WalkBlocks>()
  /** what they hold unstored, together */
  private readonly pending: WalkPending = { bytes: 0, blocks: 0, holders: new Map() }

  constructor(init: BlockFetcherInit, components: BlockFetcherComponents) {
    this.init = init
    this.components = components
  }

  /**
   * @returns a batch for one walk's blocks taken from memory: stored together, in transactions of at most
   * WALK_BATCH_BLOCKS blocks and WALK_BATCH_BYTES (or one larger block), each told to `stored()`
   */
  batch(): WalkBlocks {
    const walk = new WalkBlocks(
      (blocks) => {
        this.components.blocks.putAll(blocks)
        this.stored(blocks.map((b) => b.cid))
      },
      () => this.walks.delete(walk),
      this.pending
    )
    this.walks.add(walk)
    return walk
  }

  /**
   * Stores the blocks the walks under way hold in memory. Garbage collection calls it before it marks what
   * it is about to delete: a walk reads stored blocks below directories it may hold here only, and what
   * only those directories lead to would otherwise look unreachable. A batch whose store fails fails its
   * walk at the walk's next flush, before anything is recorded.
   */
  flushWalks(): void {
    for (const walk of this.walks) {
      try {
        walk.flush()
      } catch (err) {
        this.components.log.debug(`cannot store the blocks a walk holds: ${(err as Error).message}`, { reason: 'block_store_failed' })
      }
    }
  }

  /**
   * One block: from the hinted blocks, the store, or bitswap (which asks every connected peer). A hinted
   * block goes to `batch` to be stored with the walk's others, or without one is stored before the caller resumes.
   *
   * @throws the signal's reason when it aborts first
   */
  async get(cid: CID, options: { signal: AbortSignal; batch?: Pick<WalkBlocks, 'add'> }): Promise<Uint8Array> {
    const key = cid.toString()
    const hinted = this.takeHinted(cid, options.batch)
    if (hinted != null) return hinted
    const local = this.components.blocks.getSync(cid) ?? this.heldByWalk(key)
    if (local != null) return local
    // The block may come by another path while bitswap looks for it: a hint that arrived out of order
    // carries it, or a bulk batch. Its arrival ends the fetch.
    trace('walk.fetch_network')
    const arrived = new AbortController()
    const wake = (): void => {
      arrived.abort()
    }
    const wakers = this.fetching.get(key) ?? new Set()
    wakers.add(wake)
    this.fetching.set(key, wakers)
    try {
      return await collect(this.init.ipfs.blockstore.get(cid, { signal: AbortSignal.any([options.signal, arrived.signal]) }))
    } catch (err) {
      const stored = arrived.signal.aborted ? (this.takeHinted(cid, options.batch) ?? this.components.blocks.getSync(cid)) : undefined
      if (stored != null) return stored
      throw err
    } finally {
      wakers.delete(wake)
      if (wakers.size === 0) this.fetching.delete(key)
    }
  }

  /**
   * Many blocks for a catch-up: local ones, then in batches over the blocks protocol, from the producer
   * when it is connected (it holds its whole outbox), else from another peer that speaks it.
   *
   * @returns those it got, each checked against its CID; what it misses is left to `get`
   */
  async getMany(producer: string, cids: readonly CID[], options: { signal: AbortSignal; onBlocks: (n: number) => void; batch?: Pick<WalkBlocks, 'add'> }): Promise<Map<string, Uint8Array>> {
    const { blocks, log } = this.components
    const out = new Map<string, Uint8Array>()
    const missing: CID[] = []
    for (const cid of cids) {
      const local = this.takeHinted(cid, options.batch) ?? blocks.getSync(cid) ?? this.heldByWalk(cid.toString())
      if (local != null) out.set(cid.toString(), local)
      else missing.push(cid)
    }
    options.onBlocks(out.size)
    if (missing.length === 0) return out
    trace('walk.fetch_bulk', missing.length)
    const peer = await this.bulkPeer(producer)
    if (peer == null) return out
    const batches: CID[][] = []
    for (let i = 0; i < missing.length; i += MAX_BATCH) batches.push(missing.slice(i, i + MAX_BATCH))
    await pooledMap(
      batches,
      BATCHES_IN_FLIGHT,
      async (batch) => {
        const signal = AbortSignal.any([options.signal, AbortSignal.timeout(this.init.fetchTimeout * 4)])
        const got = await this.init.exchange.fetch(peer, batch, signal).catch((err: Error) => {
          log.debug(`block batch from ${peer.toString()} failed: ${err.message}`)
          return new Map<string, Uint8Array>()
        })
        blocks.putAll(
          batch.flatMap((cid) => {
            const b = got.get(cid.toString())
            return b == null ? [] : [{ cid, bytes: b }]
          })
        )
        this.stored(batch.filter((cid) => got.has(cid.toString())))
        for (const [k, b] of got) out.set(k, b)
        options.onBlocks(got.size)
      },
      { signal: options.signal }
    )
    return out
  }

  /**
   * Holds the blocks a new head's message carried (already checked against their CIDs) in memory, the
   * oldest forgotten beyond HINTED_BYTES, and ends the fetches waiting for them.
   */
  keepHinted(carried: ReadonlyArray<{ cid: CID; bytes: Uint8Array }>): void {
    for (const b of carried) {
      const key = b.cid.toString()
      if (this.hinted.has(key) || b.bytes.length > HINTED_BYTES) continue
      this.hinted.set(key, b.bytes)
      this.hintedBytes += b.bytes.length
    }
    for (const [key, bytes] of this.hinted) {
      if (this.hintedBytes <= HINTED_BYTES) break
      this.hinted.delete(key)
      this.hintedBytes -= bytes.length
    }
    this.wake(carried.map((b) => b.cid))
  }

  /**
   * Takes from the blocks an old head's message carried those a walk is waiting for (a hint that arrived
   * out of order); the others are dropped, so replayed hints cannot crowd out the ones at hand.
   */
  offerHinted(carried: ReadonlyArray<{ cid: CID; bytes: Uint8Array }>): void {
    if (this.fetching.size === 0) return
    const wanted = carried.filter((b) => this.fetching.has(b.cid.toString()))
    if (wanted.length > 0) this.keepHinted(wanted)
  }

  /**
   * @returns a hinted block, which a walk reached from an accepted root: added to the walk's `batch`, or
   * without one stored before the caller resumes (the blocks taken in one turn in one transaction: a
   * microtask runs before the caller's await does)
   */
  private takeHinted(cid: CID, batch: Pick<WalkBlocks, 'add'> | undefined): Uint8Array | undefined {
    const key = cid.toString()
    const bytes = this.hinted.get(key)
    if (bytes == null) return undefined
    this.hinted.delete(key)
    this.hintedBytes -= bytes.length
    if (batch != null) {
      batch.add(cid, bytes)
      return bytes
    }
    if (this.taken.length === 0) queueMicrotask(() => this.storeTaken())
    this.taken.push({ cid, bytes })
    return bytes
  }

  private storeTaken(): void {
    const taken = this.taken
    this.taken = []
    const { blocks, log } = this.components
    try {
      blocks.putAll(taken)
    } catch (err) {
      // Nothing is lost for this node (the walk has the bytes, its events are stored); peers asking this
      // node for these blocks are answered by others, as for any block it does not hold.
      log.error(`cannot store ${taken.length} hinted block(s): ${(err as Error).message}`, { reason: 'block_store_failed' })
      return
    }
    this.stored(taken.map((b) => b.cid))
  }

  /**
   * @returns a block another walk took from the hints and holds unstored (two trees can share a block, and
   * a member can make its tree reach another's), stored now; undefined when no walk holds it
   */
  private heldByWalk(key: string): Uint8Array | undefined {
    const walk = this.pending.holders.get(key)
    if (walk == null) return undefined
    try {
      walk.flush()
    } catch {
      return undefined
    }
    return this.components.blocks.getSync(CID.parse(key))
  }

  /** Ends this node's own fetches of `cids` (they are at hand now); the fetch then looks again. */
  private wake(cids: readonly CID[]): void {
    if (this.fetching.size === 0) return
    for (const cid of cids) for (const wake of this.fetching.get(cid.toString()) ?? []) wake()
  }

  /**
   * Called for blocks written straight to the store (commits, hints, bulk batches): ends this node's
   * own fetches of them, and tells bitswap about those that a peer wants. Bitswap alone would not end
   * an own fetch: told of a block, it cancels the want but leaves its waiter waiting out the timeout.
   */
  stored(cids: readonly CID[]): void {
    if (cids.length === 0) return
    this.wake(cids)
    // Helia keeps its block brokers private; bitswap's is the one that can announce.
    const brokers = (this.init.ipfs as unknown as { blockBrokers?: AnnouncingBroker[] }).blockBrokers ?? []
    // The connections' peers as they are: getPeers() parses every peer id again (it was half of this call).
    announceWanted(
      brokers,
      cids,
      this.init.ipfs.libp2p.getConnections().map((c) => c.remotePeer)
    )
  }

  /** @returns the peer to ask for batches: the producer when connected, else any peer that speaks the protocol */
  private async bulkPeer(producer: string): Promise<PeerId | undefined> {
    const connected = this.init.ipfs.libp2p.getPeers()
    const candidates = [...connected.filter((p) => p.toString() === producer), ...connected.filter((p) => p.toString() !== producer)]
    for (const p of candidates) if (await this.init.exchange.supports(p)) return p
    return undefined
  }
}

/** What the walks of one fetcher hold unstored together: their bytes, and which walk holds each block. */
export interface WalkPending {
  bytes: number
  blocks: number
  holders: Map<string, WalkBlocks>
}

/**
 * One walk's blocks taken from memory, stored together (see BlockBatch in sync/fetch.ts): at once when
 * they reach WALK_BATCH_BLOCKS, before they would pass WALK_BATCH_BYTES, and when the walk flushes them
 * before it records what depends on them, or when the walks of `pending` would together hold more than
 * WALK_PENDING_BYTES or WALK_PENDING_BLOCKS. A store that fails is remembered: every later flush throws it.
 */
export class WalkBlocks {
  private blocks: StoredBlock[] = []
  private bytes = 0
  private failed: Error | undefined
  private ended = false
  private readonly store: (blocks: StoredBlock[]) => void
  private readonly onEnd: (() => void) | undefined
  /** what all the batches sharing it hold unstored */
  private readonly pending: WalkPending

  constructor(store: (blocks: StoredBlock[]) => void, onEnd?: () => void, pending: WalkPending = { bytes: 0, blocks: 0, holders: new Map() }) {
    this.store = store
    this.onEnd = onEnd
    this.pending = pending
  }

  add(cid: CID, bytes: Uint8Array): void {
    if (this.ended) {
      this.store([{ cid, bytes }])
      return
    }
    if (this.blocks.length > 0 && this.bytes + bytes.length > WALK_BATCH_BYTES) this.flush()
    this.blocks.push({ cid, bytes })
    this.pending.holders.set(cid.toString(), this)
    this.bytes += bytes.length
    this.pending.bytes += bytes.length
    this.pending.blocks++
    // Storing this batch takes the totals back to at most what they were before this block.
    if (this.blocks.length >= WALK_BATCH_BLOCKS || this.pending.bytes > WALK_PENDING_BYTES || this.pending.blocks > WALK_PENDING_BLOCKS) this.flush()
  }

  flush(): void {
    if (this.blocks.length === 0) {
      if (this.failed != null) throw this.failed
      return
    }
    const blocks = this.blocks
    this.blocks = []
    for (const b of blocks) {
      const key = b.cid.toString()
      if (this.pending.holders.get(key) === this) this.pending.holders.delete(key)
    }
    this.pending.bytes -= this.bytes
    this.pending.blocks -= blocks.length
    this.bytes = 0
    // After a failed store the walk records nothing: what it took since is dropped, not held.
    if (this.failed != null) throw this.failed
    try {
      this.store(blocks)
    } catch (err) {
      this.failed = new Error(`Cannot store ${blocks.length} block(s) the walk took: ${(err as Error).message}`)
      throw this.failed
    }
  }

  end(): void {
    this.ended = true
    this.onEnd?.()
    this.flush()
  }
}
