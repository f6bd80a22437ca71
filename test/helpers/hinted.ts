import { generateKeyPair } from '@libp2p/crypto/keys'
import type { CID } from 'multiformats/cid'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { openBlockDatabase, SqliteBlockstore, type StoredBlock } from '../../src/store/blockstore.ts'
import { Store } from '../../src/store/store.ts'
import { syncer as createSyncer, type Syncer } from '../../src/sync/syncer.ts'
import { HybridClock } from '../../src/model/hlc.ts'
import { CairnEventBus } from '../../src/node/events.ts'
import { Metrics } from '../../src/metrics/metrics.ts'
import { silentLog } from '../../src/log/logger.ts'
import { BlockFetcher } from '../../src/p2p/blockFetcher.ts'
import type { CairnIpfs } from '../../src/p2p/ipfs.ts'
import type { BlockExchange } from '../../src/p2p/blockExchange.ts'
import type { Outbox } from '../../src/publish/outbox.ts'
import { testOutbox } from './outbox.ts'

/** A producer's in-memory outbox, and each commit's signed head (without blocks) and the blocks it wrote. */
export async function hintedProducer(): Promise<{ outbox: Outbox; commits: Array<{ head: Uint8Array; blocks: StoredBlock[] }> }> {
  const db = await openDatabase(':memory:')
  migrate(db)
  const events = new CairnEventBus()
  const commits: Array<{ head: Uint8Array; blocks: StoredBlock[] }> = []
  events.addEventListener('outbox:committed', ({ detail }) => {
    commits.push({ head: detail.head, blocks: detail.blocks })
  })
  const blocks = new SqliteBlockstore(await openBlockDatabase(':memory:'))
  const outbox = testOutbox({ db, blocks, privateKey: await generateKeyPair('Ed25519'), maxBatch: 100, maxEventSize: 256 * 1024, maxDepth: 64, events })
  return { outbox, commits }
}

/** @returns a fetcher over `blocks` whose network is `get` (Helia's blockstore.get), with no peers */
export function fetcherOver(blocks: SqliteBlockstore, get: (cid: CID) => unknown, fetchTimeout: number): BlockFetcher {
  const ipfs = { blockstore: { get }, libp2p: { getConnections: () => [], getPeers: () => [] } } as unknown as CairnIpfs
  return new BlockFetcher({ ipfs, exchange: {} as BlockExchange, fetchTimeout }, { blocks, log: silentLog, events: new CairnEventBus() })
}

/**
 * A consumer: an in-memory store and block store, the fetcher `fetcherOf` makes over them, and a syncer that
 * reads through it, storing each walk's blocks taken from the hints in the fetcher's batches.
 */
export async function hintedConsumer(
  fetcherOf: (blocks: SqliteBlockstore) => BlockFetcher,
  fetchTimeout: number
): Promise<{ store: Store; blocks: SqliteBlockstore; fetcher: BlockFetcher; syncer: Syncer; events: CairnEventBus }> {
  const db = await openDatabase(':memory:')
  migrate(db)
  const store = new Store(db)
  const blocks = new SqliteBlockstore(await openBlockDatabase(':memory:'))
  const fetcher = fetcherOf(blocks)
  const events = new CairnEventBus()
  const syncer = createSyncer({
    getBlock: async (cid, options) => await fetcher.get(cid, options),
    blockBatch: () => fetcher.batch(),
    keepBlocks: (b) => {
      fetcher.keepHinted(b)
    },
    limits: { maxEventSize: 256 * 1024, maxDepth: 64, maxFilesPerWalk: 10_000 },
    fetchTimeout
  })({ self: 'consumer', store, clock: new HybridClock(), log: silentLog, metrics: new Metrics(), events })
  return { store, blocks, fetcher, syncer, events }
}
