import { describe, expect, test } from 'bun:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { CID } from 'multiformats/cid'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { openBlockDatabase, SqliteBlockstore } from '../../src/store/blockstore.ts'
import { testOutbox } from '../helpers/outbox.ts'
import { syncer as createSyncer } from '../../src/sync/syncer.ts'
import { HybridClock } from '../../src/model/hlc.ts'
import { Store } from '../../src/store/store.ts'
import { CairnEventBus, waitFor } from '../../src/node/events.ts'
import { Metrics } from '../../src/metrics/metrics.ts'
import { silentLog } from '../../src/log/logger.ts'

/** A producer's outbox and a consumer's syncer in one process; the consumer's fetches are counted. */
async function pair() {
  const key = await generateKeyPair('Ed25519')
  const pdb = await openDatabase(':memory:')
  migrate(pdb)
  const pblocks = new SqliteBlockstore(await openBlockDatabase(':memory:'))
  const heads: Uint8Array[] = []
  const producerEvents = new CairnEventBus()
  producerEvents.addEventListener('outbox:committed', (e) => {
    heads.push(e.detail.head)
  })
  // Every file in one hour bucket: a run that crosses an hour would put the last event in a new bucket and day.
  const outbox = testOutbox({ db: pdb, blocks: pblocks, privateKey: key, maxBatch: 5000, maxEventSize: 256 * 1024, maxDepth: 64, events: producerEvents, now: () => new Date('2026-11-23T10:15:00Z') })
  const cdb = await openDatabase(':memory:')
  migrate(cdb)
  const fetched = { blocks: 0, bytes: 0 }
  const events = new CairnEventBus()
  const syncer = createSyncer({
    getBlock: async (cid: CID) => {
      const b = pblocks.getSync(cid)
      if (b == null) throw new Error(`missing ${cid}`)
      fetched.blocks++
      fetched.bytes += b.length
      return b
    },
    limits: { maxEventSize: 256 * 1024, maxDepth: 64, maxFilesPerWalk: 1_000_000 },
    fetchTimeout: 5000
  })({ self: 'consumer', store: new Store(cdb), clock: new HybridClock(), log: silentLog, metrics: new Metrics(), events })
  const synced = async (): Promise<void> => {
    const idle = waitFor(events, 'sync:idle', { signal: AbortSignal.timeout(60_000) })
    await syncer.offerHead(heads.at(-1)!)
    await idle
  }
  return { outbox, cdb, fetched, synced, syncer, events, heads }
}

async function costOfOneMore(existing: number): Promise<{ blocks: number; bytes: number }> {
  const { outbox, cdb, fetched, synced } = await pair()
  await Promise.all(Array.from({ length: existing }, async (_, i) => await outbox.publish({ type: 'test.fill', payload: { i } })))
  await synced()
  expect(cdb.get<{ n: number }>('SELECT count(*) AS n FROM events')?.n).toBe(existing)
  fetched.blocks = 0
  fetched.bytes = 0
  await outbox.publish({ type: 'test.one', payload: { last: true } })
  await synced()
  expect(cdb.get<{ n: number }>('SELECT count(*) AS n FROM events')?.n).toBe(existing + 1)
  return { ...fetched }
}

describe('sync cost', () => {
  test('syncing one new event fetches a few small blocks whether the outbox holds 1,000 or 20,000 files', async () => {
    const small = await costOfOneMore(1000)
    const large = await costOfOneMore(20_000)
    // root, day, the bucket's changed shards (one per level, 16 links each), the file: a handful of
    // small blocks either way; 20x the files adds a shard level or two (the depth grows as log16)
    expect(small.blocks).toBeLessThanOrEqual(7)
    expect(large.blocks).toBeLessThanOrEqual(small.blocks + 2)
    // ... and a few KiB in all, never 20x
    expect(large.bytes).toBeLessThan(small.bytes * 2)
    expect(large.bytes).toBeLessThan(8 * 1024)
  })

  test('the syncer dispatches sync:idle when its walks are done', async () => {
    const { outbox, cdb, syncer, events, heads } = await pair()
    await Promise.all(Array.from({ length: 3 }, async (_, i) => await outbox.publish({ type: 'test.fill', payload: { i } })))
    const idle = waitFor(events, 'sync:idle')
    expect(await syncer.offerHead(heads.at(-1)!)).toBe('new')
    await idle
    expect({ busy: syncer.busy, events: cdb.get<{ n: number }>('SELECT count(*) AS n FROM events')?.n }).toEqual({ busy: false, events: 3 })
  })
})
