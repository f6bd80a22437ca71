import type { CID } from 'multiformats/cid'
import type { Log } from '../log/logger.ts'
import { pooledMap } from '../util/pool.ts'

/**
 * The blocks one walk took from memory (those hints carried), to store together: at once when they pass
 * a bound of count and bytes, and by `flush` before the walk records anything that depends on them.
 */
export interface BlockBatch {
  add(cid: CID, bytes: Uint8Array): void
  /**
   * Stores the blocks added since the last store, in one transaction.
   *
   * @throws Error when this store, or one before it of this batch, failed: nothing may be recorded that depends on them
   */
  flush(): void
  /** Flushes, and from then on stores each block added at once (a fetch still under way when the walk ended). */
  end(): void
}

/**
 * Fetches a block, from the local store or from the connected peers (bitswap asks them all). With a
 * `batch`, a block taken from memory goes to it to be stored; without one, it is stored at once.
 */
export type BlockGetter = (cid: CID, options: { signal: AbortSignal; batch?: BlockBatch }) => Promise<Uint8Array>

/**
 * Fetches many blocks at once (a catch-up's event files), from the local store or in batches from a
 * peer; @returns those it got, each already checked against its CID. What it misses goes to getBlock.
 */
export type BlocksGetter = (producer: string, cids: readonly CID[], options: { signal: AbortSignal; onBlocks: (n: number) => void; batch?: BlockBatch }) => Promise<Map<string, Uint8Array>>

/** How one walk fetches the blocks of one producer's tree. */
export interface WalkFetcher {
  producer: string
  getBlock: BlockGetter
  getBlocks?: BlocksGetter
  /** how long one block may take */
  fetchTimeout: number
  /** aborts when the syncer stops or a newer head supersedes the walk */
  signal: AbortSignal
  /** tells the scheduler the walk is not stuck */
  progressed: () => void
  log: Log
  /** counts the blocks the walk reads in batches into the syncer's count, which collects the heap's garbage as they add up */
  collector?: CollectShare
  /** where the blocks the walk takes from memory wait to be stored; flushed before the walk records anything */
  batch?: BlockBatch
}

/**
 * Blocks the walks read in batches (directories and event files), counted across walks, between two full
 * collections of the heap, where the runtime can collect on demand. Sync's garbage follows the blocks it
 * decodes, in one long catch-up or in the many short walks that follow a busy producer, and
 * JavaScriptCore, pacing its collections by the machine's RAM, lets that garbage grow to hundreds of MiB;
 * a collection costs tens of ms at a node's live heap. A node syncing fewer blocks never collects.
 */
export const COLLECT_EVERY_BLOCKS = 16_384

/** Runs `collect` when the blocks counted pass another multiple of `every` (once per batch counted). */
export class CollectEvery {
  /** collections run, and the milliseconds they took */
  collections = 0
  ms = 0
  private count = 0

  constructor(
    private readonly every: number,
    private readonly collect: () => void
  ) {}

  /**
   * Counts `n` blocks about to be read; collects first (once) when the count passes another multiple of `every`.
   *
   * @returns the milliseconds of the collection it ran, or undefined when it ran none
   */
  add(n: number): number | undefined {
    const before = Math.floor(this.count / this.every)
    this.count += n
    if (Math.floor(this.count / this.every) === before) return undefined
    const t0 = performance.now()
    this.collect()
    const ms = performance.now() - t0
    this.ms += ms
    this.collections++
    return ms
  }

  /** @returns a counter for one walk: its blocks go to this count, the collections they set off are its own */
  share(): CollectShare {
    return new CollectShare(this)
  }
}

/** One walk's share of a CollectEvery that counts the blocks of all walks (several run at once). */
export class CollectShare {
  /** collections this walk's blocks set off, and the milliseconds they took */
  collections = 0
  ms = 0

  constructor(private readonly of: CollectEvery) {}

  /** Counts `n` blocks about to be read, as CollectEvery.add does. */
  add(n: number): void {
    const ms = this.of.add(n)
    if (ms == null) return
    this.collections++
    this.ms += ms
  }
}

/** @returns the block of `cid`, within the fetch timeout */
export async function fetchBlock(f: WalkFetcher, cid: CID): Promise<Uint8Array> {
  const bytes = await f.getBlock(cid, { signal: AbortSignal.any([AbortSignal.timeout(f.fetchTimeout), f.signal]), batch: f.batch })
  f.progressed()
  return bytes
}

/** How `fetchBlocks` spreads its work. */
export interface FetchManyOptions {
  /** from this many blocks on, ask getBlocks for them in one batch first */
  bulkFrom: number
  /** how many blocks the batch missed are fetched one by one at the same time */
  concurrency: number
  /** called with how many blocks arrived, in the batch or one by one */
  onFetched?: (n: number) => void
}

/**
 * @returns the blocks of `cids`, in order: in one batch where that pays, the ones it missed (or all,
 * when the batch failed) one by one; counted by the walk's collector first, while what the walks read
 * before is garbage
 */
export async function fetchBlocks(f: WalkFetcher, cids: readonly CID[], options: FetchManyOptions): Promise<Uint8Array[]> {
  f.collector?.add(cids.length)
  let bulk = new Map<string, Uint8Array>()
  if (f.getBlocks != null && cids.length >= options.bulkFrom) {
    try {
      bulk = await f.getBlocks(f.producer, cids, {
        signal: f.signal,
        batch: f.batch,
        onBlocks: (n) => {
          f.progressed()
          options.onFetched?.(n)
        }
      })
    } catch (err) {
      f.log.debug(`bulk fetch from ${f.producer} failed, falling back to bitswap: ${(err as Error).message}`, { producer: f.producer })
    }
  }
  return await pooledMap(cids, options.concurrency, async (cid) => {
    const got = bulk.get(cid.toString())
    if (got != null) return got
    const bytes = await fetchBlock(f, cid)
    options.onFetched?.(1)
    return bytes
  })
}
