import { describe, expect, test } from 'bun:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { CID } from 'multiformats/cid'
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
import { walkDag } from '../../src/unixfs/walk.ts'

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
  /** @returns how many blocks lead from the outbox root to `file`, both included: what a commit of it alone changed */
  const pathLength = (file: string): number => {
    const parent = new Map<string, string>()
    for (const step of walkDag([CID.parse(new Store(pdb).outbox.root()!)], (cid) => pblocks.getSync(cid), { readFiles: false }))
      if (step.kind === 'directory') for (const c of [...step.node.entries, ...step.node.shards]) parent.set(c.cid.toString(), step.cid.toString())
    let n = 1
    for (let at = parent.get(file); at != null; at = parent.get(at)) n++
    return n
  }
  return { outbox, cdb, fetched, synced, syncer, events, heads, pathLength }
}

/** @returns what syncing one more event fetched, and the length of the path from the root to its file */
async function costOfOneMore(existing: number): Promise<{ blocks: number; bytes: number; path: number }> {
  const { outbox, cdb, fetched, synced, pathLength } = await pair()
  await Promise.all(Array.from({ length: existing }, async (_, i) => await outbox.publish({ type: 'test.fill', payload: { i } })))
  await synced()
  expect(cdb.get<{ n: number }>('SELECT count(*) AS n FROM events')?.n).toBe(existing)
  fetched.blocks = 0
  fetched.bytes = 0
  const { cid } = await outbox.publish({ type: 'test.one', payload: { last: true } })
  await synced()
  expect(cdb.get<{ n: number }>('SELECT count(*) AS n FROM events')?.n).toBe(existing + 1)
  return { ...fetched, path: pathLength(cid) }
}

describe('sync cost', () => {
  test('syncing one new event fetches a few small blocks whether the outbox holds 1,000 or 20,000 files', async () => {
    const small = await costOfOneMore(1000)
    const large = await costOfOneMore(20_000)
    // Only the blocks the commit changed: root, day, the bucket's shards on the new file's path (one per
    // level, 16 links each) and the file. Names are placed by hash, so the path's depth varies by a level
    // from run to run; it grows as log16 of the files, never with their number.
    expect(small.blocks).toBeLessThanOrEqual(small.path)
    expect(large.blocks).toBeLessThanOrEqual(large.path)
    expect(small.path).toBeLessThanOrEqual(8)
    expect(large.path).toBeLessThanOrEqual(small.path + 3)
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
