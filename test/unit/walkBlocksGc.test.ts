import { describe, expect, test } from 'bun:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { CID } from 'multiformats/cid'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { openBlockDatabase, SqliteBlockstore, type StoredBlock } from '../../src/store/blockstore.ts'
import { Store } from '../../src/store/store.ts'
import { syncer as createSyncer } from '../../src/sync/syncer.ts'
import { HybridClock } from '../../src/model/hlc.ts'
import { CairnEventBus, waitFor } from '../../src/node/events.ts'
import { Metrics } from '../../src/metrics/metrics.ts'
import { silentLog } from '../../src/log/logger.ts'
import { BlockFetcher } from '../../src/p2p/blockFetcher.ts'
import type { CairnIpfs } from '../../src/p2p/ipfs.ts'
import type { BlockExchange } from '../../src/p2p/blockExchange.ts'
import { collectGarbage } from '../../src/housekeeping/gc.ts'
import { withBlocks } from '../../src/model/head.ts'
import { testOutbox } from '../helpers/outbox.ts'
import { waitFor as until } from '../helpers/process.ts'

const RAW = 0x55

/**
 * A fetcher over `blocks` whose network answers only when the test releases a block: what bitswap fetches
 * it stores, as Helia's networked blockstore does.
 */
function gatedFetcher(blocks: SqliteBlockstore, network: Map<string, Uint8Array>) {
  const asked: string[] = []
  let release: () => void = () => {}
  const released = new Promise<void>((resolve) => {
    release = resolve
  })
  const ipfs = {
    blockstore: {
      get: (cid: CID) =>
        (async function* () {
          asked.push(cid.toString())
          await released
          const bytes = network.get(cid.toString())
          if (bytes == null) throw new Error(`no peer has ${cid.toString()}`)
          blocks.putSync(cid, bytes)
          yield bytes
        })()
    },
    libp2p: { getConnections: () => [], getPeers: () => [] }
  } as unknown as CairnIpfs
  const fetcher = new BlockFetcher({ ipfs, exchange: {} as BlockExchange, fetchTimeout: 10_000 }, { blocks, log: silentLog, events: new CairnEventBus() })
  return { fetcher, asked, release }
}

describe('garbage collection during a walk that holds blocks taken from the hints', () => {
  test('keeps the stored blocks that the walk reached through them', async () => {
    // The producer: two commits, one event each, in one hour.
    const key = await generateKeyPair('Ed25519')
    const pdb = await openDatabase(':memory:')
    migrate(pdb)
    const pevents = new CairnEventBus()
    const commits: Array<{ head: Uint8Array; blocks: StoredBlock[] }> = []
    pevents.addEventListener('outbox:committed', ({ detail }) => {
      commits.push({ head: detail.head, blocks: detail.blocks })
    })
    const outbox = testOutbox({ db: pdb, blocks: new SqliteBlockstore(await openBlockDatabase(':memory:')), privateKey: key, maxBatch: 100, maxEventSize: 256 * 1024, maxDepth: 64, events: pevents })
    await outbox.publish({ type: 'test.gc', payload: { i: 1 } })
    await outbox.publish({ type: 'test.gc', payload: { i: 2 } })
    const fileOf = (c: { blocks: StoredBlock[] }): StoredBlock => {
      const files = c.blocks.filter((b) => b.cid.code === RAW)
      expect(files.length).toBe(1)
      return files[0]
    }
    const f1 = fileOf(commits[0])
    const f2 = fileOf(commits[1])

    // The consumer holds the blocks of commit 1 without any root reaching them (the walk to it was
    // superseded by commit 2's head and stored what it had taken when it ended).
    const cdb = await openDatabase(':memory:')
    migrate(cdb)
    const store = new Store(cdb)
    const blocks = new SqliteBlockstore(await openBlockDatabase(':memory:'))
    blocks.putAll(commits[0].blocks)
    const { fetcher, asked, release } = gatedFetcher(blocks, new Map([[f2.cid.toString(), f2.bytes]]))
    const events = new CairnEventBus()
    const syncer = createSyncer({
      getBlock: async (cid, options) => await fetcher.get(cid, options),
      blockBatch: () => fetcher.batch(),
      keepBlocks: (b) => {
        fetcher.keepHinted(b)
      },
      limits: { maxEventSize: 256 * 1024, maxDepth: 64, maxFilesPerWalk: 10_000 },
      fetchTimeout: 10_000
    })({ self: 'consumer', store, clock: new HybridClock(), log: silentLog, metrics: new Metrics(), events })

    // Commit 2's hint carries its directories but not its file, which comes from the network, late.
    const carried = commits[1].blocks.filter((b) => !b.cid.equals(f2.cid))
    await syncer.offerHead(withBlocks(commits[1].head, carried))
    await until('the walk to ask the network for the second file', () => asked.includes(f2.cid.toString()), 10_000)
    // The walk read file 1 from the store, below directories it took from the hint and holds in memory.
    await collectGarbage(store, blocks, {
      walking: () => syncer.walkingRoots(),
      flushWalks: () => {
        fetcher.flushWalks()
      },
      exclusive: async (fn) => fn()
    })
    const idle = waitFor(events, 'sync:idle', { signal: AbortSignal.timeout(10_000) })
    release()
    await idle
    await syncer.stop()

    const row = store.producers.all().find((r) => r.producer !== 'consumer')!
    expect(row.processed_seq).toBe(2)
    expect(row.synced_root).toBe(row.head_root)
    expect(store.db.get<{ n: number }>('SELECT count(*) AS n FROM events')?.n).toBe(2)
    // Every block of the synced tree is held: file 1's row is there, so must its file be.
    expect(blocks.has(f1.cid)).toBe(true)
    for (const b of commits[1].blocks) expect(blocks.has(b.cid)).toBe(true)
  })
})
