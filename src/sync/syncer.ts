import { CID } from 'multiformats/cid'
import type { EventEnvelope } from '../model/envelope.ts'
import type { FileLimits, Rejection } from '../model/eventFile.ts'
import type { Components } from '../node/components.ts'
import { trace } from '../log/trace.ts'
import { CollectEvery, type BlockBatch, type BlockGetter, type BlocksGetter, type WalkFetcher } from './fetch.ts'
import type { Head, VerifiedHead } from '../model/head.ts'
import type { ProducerRow } from '../store/producers.ts'
import { intakeHead, judgeHead, producerRow, type HeadIntakeInit, type HeadVerdict, type SeenRow } from './headIntake.ts'
import { ingest } from './ingest.ts'
import { listChanges } from './listing.ts'
import { WalkBudget, WINDOW_CHUNKS } from './plan.ts'
import { RefusedTreeError, WaitingForOwnerError } from '../errors.ts'
import { WalkScheduler, type WalkHandle } from './scheduler.ts'

export type { BlockBatch, BlockGetter, BlocksGetter } from './fetch.ts'

/** How the syncer fetches and checks what producers publish. */
export interface SyncerInit extends HeadIntakeInit {
  getBlock: BlockGetter
  getBlocks?: BlocksGetter
  /**
   * a batch for one walk's blocks taken from memory, stored together: flushed before the walk records
   * anything and when it ends; without it each is stored as it is taken
   */
  blockBatch?: () => BlockBatch
  limits: FileLimits & { maxFilesPerWalk: number }
  /** how long one block may take, in ms */
  fetchTimeout: number
  /** a further check of each envelope (producer policy, payload schema); a rejection quarantines the file */
  checkEvent?: (envelope: EventEnvelope) => Rejection | undefined
  /**
   * before a producer's events are taken: the owner whose events up to `seq` must be processed first
   * (the membership changes the producer had seen, from its head's acks), or undefined
   */
  waitFor?: (producer: string, acks: Record<string, number>, processed: Record<string, number>) => { owner: string; seq: number } | undefined
  /** a full collection of the heap, run once per `every` blocks the walks read together (COLLECT_EVERY_BLOCKS); none without it */
  collectGarbage?: { every: number; collect: () => void }
}

/** What the syncer uses of the node. */
export type SyncerComponents = Pick<Components, 'self' | 'store' | 'clock' | 'log' | 'metrics' | 'events'>

/**
 * Creates the syncer, which turns heads into rows of `events`. It dispatches 'head:accepted',
 * 'events:ingested', 'peer:rejected' (a file or directory quarantined), 'sync:progress' and 'sync:idle'.
 *
 * @example
 * ```ts
 * const sync = syncer({ getBlock, limits, fetchTimeout: 10_000 })(components)
 * sync.start()
 * await sync.offerHead(bytes)
 * ```
 */
export function syncer(init: SyncerInit): (components: SyncerComponents) => Syncer {
  return (components) => new Syncer(init, components)
}

/**
 * For a head that is news it fetches the new root, walks only the directories whose CIDs changed since
 * the last walk, fetches the files whose seq is above the processed one, checks them, and inserts them in
 * seq order. Gaps (seqs no longer in the tree) are recorded.
 */
export class Syncer {
  status: 'started' | 'stopped' = 'stopped'
  private readonly init: SyncerInit
  private readonly components: SyncerComponents
  private readonly scheduler: WalkScheduler
  /** per producer, the root its last walk refused: not walked again until a newer head (one entry per producer) */
  private readonly refusedRoots = new Map<string, string>()
  /** producers whose walk waits for an owner's events (one entry per producer): walked again when an owner's walk ends */
  private readonly waiting = new Map<string, string>()
  /**
   * producers whose `last_error` is the wait for an owner's events (one entry per producer): the next walk
   * clears it, whatever it finds, and sets it again only if it waits again
   */
  private readonly waitShown = new Set<string>()
  /** per producer, the root its walk under way reads (one entry per producer), until the walk ends */
  private readonly walking = new Map<string, string>()
  /** per verified message `judge` saw (the gossip validator's), the producer's row it read: intake reads it again only after a write */
  private readonly judgedRows = new WeakMap<VerifiedHead, SeenRow>()
  /**
   * Counts the blocks every walk reads, and collects the heap's garbage as they add up: a catch-up is one
   * long walk, but a producer publishing fast is followed by many short ones, whose garbage adds up the same.
   */
  private readonly collector: CollectEvery | undefined

  constructor(init: SyncerInit, components: SyncerComponents) {
    this.init = init
    this.components = components
    this.collector = init.collectGarbage == null ? undefined : new CollectEvery(init.collectGarbage.every, init.collectGarbage.collect)
    this.scheduler = new WalkScheduler({
      walk: async (producer, handle) => {
        try {
          await this.walk(producer, handle)
        } finally {
          this.walking.delete(producer)
          this.wakeWaiting(producer)
        }
      },
      onFailure: (producer, err, delay) => {
        components.store.producers.setError(producer, err.message)
        // Waiting for an owner's events is the membership's ordering at work, not a failure.
        if (err instanceof WaitingForOwnerError) {
          this.waitShown.add(producer)
          components.log.info(`sync of ${producer} waits: ${err.message}`, { producer, reason: 'waiting_for_owner' })
        } else {
          this.waitShown.delete(producer)
          components.log.warn(`sync of ${producer} failed, retrying in ${delay} ms: ${err.message}`, { producer })
        }
      },
      onIdle: () => {
        components.events.safeDispatchEvent('sync:idle')
      }
    })
  }

  /** Starts syncing every producer whose head is ahead of what was processed (after a restart). */
  start(): void {
    if (this.status === 'started') return
    this.status = 'started'
    this.scheduler.start()
    for (const producer of this.components.store.producers.behind(this.components.self)) this.scheduler.schedule(producer)
  }

  /** Stops scheduling work and waits for the walks under way. */
  async stop(): Promise<void> {
    this.status = 'stopped'
    await this.scheduler.stop()
  }

  /**
   * @returns the roots of the walks under way: a walk reads blocks it holds (put before, or stored and read
   * without a put) and records its root as synced once done, though a newer head may have replaced that
   * root as the producer's head meanwhile, so garbage collection keeps what these reach
   */
  walkingRoots(): string[] {
    return [...this.walking.values()]
  }

  /** @returns whether a walk is under way or due */
  get busy(): boolean {
    return this.scheduler.busy
  }

  /**
   * Offers a signed head, from gossip, the head exchange, or a relay. Heads offered before `start()` are
   * walked at once; after `stop()` they are only stored.
   *
   * @returns 'new' when it moved the producer's head forward, 'old' when it changed nothing
   * @throws InvalidHeadError when it does not verify or is from a non-member
   */
  async offerHead(bytes: Uint8Array): Promise<'new' | 'old'> {
    return (await this.intake(bytes)) == null ? 'old' : 'new'
  }

  /** @returns the head when it moved its producer's head forward (and is walked), else undefined */
  private async intake(bytes: Uint8Array): Promise<Head | undefined> {
    const head = await intakeHead(bytes, this.init, this.components, (message) => this.judgedRows.get(message))
    if (head == null) return undefined
    this.scheduler.supersede(head.producer)
    trace('head.accepted', head.seq)
    this.scheduler.schedule(head.producer)
    return head
  }

  /**
   * Accepts a head from a peer (gossip, the head exchange, a relay): a head that changes nothing is
   * counted as old; a bad one is counted and dispatched as 'peer:rejected', never thrown.
   *
   * @returns the producer of the head when it was news (the head limiter gives the peer's credit back)
   */
  async acceptHead(bytes: Uint8Array, peer: string): Promise<string | undefined> {
    const { metrics, events } = this.components
    try {
      const head = await this.intake(bytes)
      if (head == null) metrics.headsReceived.inc({ result: 'old' })
      return head?.producer
    } catch (err) {
      metrics.headsReceived.inc({ result: 'rejected' })
      const { reason, producer } = err as { reason?: string; producer?: string }
      events.safeDispatchEvent('peer:rejected', { detail: { reason: reason ?? 'bad_head', detail: (err as Error).message, peer, producer } })
      return undefined
    }
  }

  /**
   * @returns what a verified head would be to this node (news, old, refused), changing nothing; the
   * producer's row it read is kept for the intake of the same message
   */
  judge(message: VerifiedHead): HeadVerdict {
    let seen: SeenRow | undefined
    const verdict = judgeHead(message.head, this.init, this.components, (p) => {
      seen = producerRow(this.components.store, p)
      return seen.row
    })
    if (seen != null) this.judgedRows.set(message, seen)
    return verdict
  }

  /** @returns the signed heads this node knows, its own included, to relay to peers */
  knownHeads(): Uint8Array[] {
    return this.components.store.producers.signedHeads()
  }

  /** Walks `producer`'s tree soon; coalesces with a walk under way. */
  schedule(producer: string): void {
    this.scheduler.schedule(producer)
  }

  /**
   * Refuses a producer's tree: records why in its `last_error`, counts and logs it as 'peer:rejected',
   * and does not walk that root again (a newer head is walked as usual). Other producers sync on.
   */
  private refuse(producer: string, root: string, err: RefusedTreeError, dirs: number): void {
    const { store, log, events } = this.components
    this.refusedRoots.set(producer, root)
    store.producers.setError(producer, `tree ${root} refused (${err.reason}): ${err.message}`)
    log.warn(`refused the tree of ${producer} at ${root} after ${dirs} directories: ${err.message}`, { producer, reason: err.reason })
    events.safeDispatchEvent('peer:rejected', { detail: { reason: err.reason, detail: `${producer}: ${err.message}`, peer: producer } })
  }

  /** Walks again the producers that waited for `owner`'s events, now that a walk of it ended. */
  private wakeWaiting(owner: string): void {
    for (const [producer, on] of this.waiting) {
      if (on !== owner) continue
      this.waiting.delete(producer)
      this.scheduler.schedule(producer)
    }
  }

  private async walk(producer: string, handle: WalkHandle): Promise<void> {
    const { store, log } = this.components
    // A wait shown in last_error ends with this walk: one that waits again shows it again (onFailure), and
    // one that finds nothing to take (the owner's events removed the producer, or brought nothing) must not
    // leave it standing.
    if (this.waitShown.delete(producer)) store.producers.setError(producer, null)
    const row = store.producers.get(producer)
    // The same root can come back (an outbox pruned empty has the empty directory's CID), so a seq
    // ahead of the processed one always needs a walk: that is how gaps are found.
    if (row == null || row.head_root == null || (row.head_root === row.synced_root && row.processed_seq >= row.head_seq)) return
    if (this.refusedRoots.get(producer) === row.head_root) return
    // A removed member is walked only up to its last valid seq; a producer that is no member, not at all.
    const removed = this.init.removedAt?.(producer)
    if (removed != null && row.processed_seq >= removed.last_seq) return
    if (removed == null && this.init.isMember?.(producer) === false) return
    const cap = removed == null ? row.head_seq : Math.min(row.head_seq, removed.last_seq)
    const wait = this.init.waitFor?.(producer, parseAcks(row.acks), store.producers.processed())
    if (wait != null) {
      this.waiting.set(producer, wait.owner)
      this.scheduler.schedule(wait.owner)
      throw new WaitingForOwnerError(`Waiting for the events of owner ${wait.owner} up to seq ${wait.seq}, which ${producer} had seen: membership changes come first`)
    }
    this.walking.set(producer, row.head_root)
    log.debug(`walking ${producer} to seq ${row.head_seq} (processed ${row.processed_seq})`, { producer })
    trace('walk.started', row.head_seq)
    const fetcher: WalkFetcher = {
      producer,
      getBlock: this.init.getBlock,
      getBlocks: this.init.getBlocks,
      fetchTimeout: this.init.fetchTimeout,
      signal: handle.signal,
      progressed: handle.progressed,
      log,
      collector: this.collector?.share(),
      batch: this.init.blockBatch?.()
    }
    try {
      await this.walkWith(fetcher, { ...row, head_root: row.head_root }, cap)
    } finally {
      // What a walk that stopped short (refused, failed, aborted) took still goes to the store, and so
      // does what a fetch still under way takes after it.
      try {
        fetcher.batch?.end()
      } catch (err) {
        log.error(`${(err as Error).message}`, { producer, reason: 'block_store_failed' })
      }
    }
  }

  /** Lists and ingests what changed in `row`'s tree, up to `cap`. */
  private async walkWith(fetcher: WalkFetcher, row: ProducerRow & { head_root: string }, cap: number): Promise<void> {
    const { store, log } = this.components
    const { producer } = fetcher
    const root = CID.parse(row.head_root)
    const t0 = performance.now()
    const window = {
      processedSeq: row.processed_seq,
      syncedSeq: row.synced_seq,
      headSeq: row.head_seq,
      compactedSince: Math.max(0, (row.head_compacted ?? 0) - row.synced_compacted),
      maxEventSize: this.init.limits.maxEventSize
    }
    const budget = new WalkBudget(window, this.init.limits.maxFilesPerWalk)
    let listing: Awaited<ReturnType<typeof listChanges>>
    try {
      listing = await listChanges(fetcher, root, store.remoteDirs, window, budget, this.init.limits.maxFilesPerWalk * WINDOW_CHUNKS)
    } catch (err) {
      if (!(err instanceof RefusedTreeError)) throw err
      this.refuse(producer, row.head_root, err, budget.dirs)
      return
    }
    const t1 = performance.now()
    trace('walk.listed')
    if (cap < listing.top) listing = capListing(listing, cap)
    const stats = await ingest(
      fetcher,
      { headRoot: row.head_root, processedSeq: row.processed_seq, joinedSeq: row.joined_seq ?? 0, prunedPlain: row.pruned_plain, compacted: row.head_compacted ?? 0 },
      listing,
      {
        ...this.components,
        limits: this.init.limits,
        checkEvent: this.init.checkEvent
      }
    )
    // A pass that kept only the lowest seqs: the next goes on from its top, right after this one.
    if (!listing.complete) this.scheduler.schedule(producer)
    log.debug(
      `walked ${producer}: ${budget.dirs} directories in ${(t1 - t0).toFixed(0)} ms, ${listing.files.toFetch()} files to seq ${listing.top} in ${stats.chunks} chunk(s), waited ${stats.fetchMs.toFixed(0)} ms for them, checked and stored in ${stats.storeMs.toFixed(0)} ms, ${fetcher.collector?.collections ?? 0} collection(s) of the heap in ${(fetcher.collector?.ms ?? 0).toFixed(0)} ms`,
      { producer }
    )
  }
}

/** @returns a head's acks as stored (JSON), or none when they do not parse */
function parseAcks(text: string): Record<string, number> {
  try {
    const acks = JSON.parse(text) as unknown
    return acks != null && typeof acks === 'object' ? (acks as Record<string, number>) : {}
  } catch {
    return {}
  }
}

/**
 * @returns the listing without what lies above `cap` (a removed member's events after its last valid seq):
 * a pass that ends at `cap`, short of the head, so its directories are not recorded as walked; its files
 * are cut in place
 */
function capListing(listing: Awaited<ReturnType<typeof listChanges>>, cap: number): Awaited<ReturnType<typeof listChanges>> {
  listing.files.keepUpTo(cap)
  return { walked: new Map(), files: listing.files, refused: listing.refused, top: cap, complete: false }
}
