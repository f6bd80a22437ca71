import { describe, expect, test } from 'bun:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { openBlockDatabase, SqliteBlockstore } from '../../src/store/blockstore.ts'
import { Store } from '../../src/store/store.ts'
import { blocksDurableThrough, checkOutboxBlocks, recoverOutboxBlocks } from '../../src/publish/recover.ts'
import { walkDag } from '../../src/unixfs/walk.ts'
import { testOutbox } from '../helpers/outbox.ts'

/** An outbox whose clock is `at()`, over in-memory databases. */
async function setup() {
  const privateKey = await generateKeyPair('Ed25519')
  const db = await openDatabase(':memory:')
  migrate(db)
  const blocks = new SqliteBlockstore(await openBlockDatabase(':memory:'))
  let at = Date.parse('2026-11-29T04:59:58Z')
  const outbox = testOutbox({ db, blocks, privateKey, maxBatch: 100, maxEventSize: 4096, maxDepth: 16, now: () => new Date(at) })
  return {
    outbox,
    blocks,
    store: new Store(db),
    self: peerIdFromPrivateKey(privateKey).toString(),
    tick: (ms: number) => {
      at += ms
    }
  }
}

/** @returns the blocks reachable from the own root that the store lacks */
function missing(store: Store, blocks: SqliteBlockstore): string[] {
  const out: string[] = []
  for (const step of walkDag([CID.parse(store.outbox.root()!)], (cid) => blocks.getSync(cid))) if (step.kind === 'missing') out.push(step.cid.toString())
  return out
}

/** Payloads whose canonical JSON an events row must give back byte for byte. */
const payloads = (i: number): unknown[] => [
  { i, text: 'zoë 🧭 \u2028 "quoted" \\ back', nested: { z: [1, 2.5, -0, 1e21, null, true], a: {} } },
  { i, big: 9007199254740991, small: 1e-7, keys: { b: 1, a: 2, __proto__: 3 } },
  { i, list: [{ y: 'x', x: 'y' }], empty: '' }
]

describe('the startup check of the own outbox blocks', () => {
  test('rebuilds the blocks that commits after the last sync lost (files, shards across two hours, days, root) byte for byte from cairn.db', async () => {
    const { outbox, blocks, store, self, tick } = await setup()
    for (let i = 0; i < 30; i++) await outbox.publish({ type: 'test.before', payload: { i } })
    outbox.syncBlocks()
    expect(blocksDurableThrough(store)).toBe(30)
    const synced = new Set(blocks.sizes().map((b) => b.cid))
    // The tail crosses an hour: two buckets and their day change after the sync.
    for (let i = 0; i < 40; i++) {
      const [payload, ...more] = payloads(i)
      await outbox.publish({ type: 'test.after', payload, actor: i % 2 === 0 ? 'user:7' : undefined, correlation_id: i % 3 === 0 ? `c${i}` : undefined })
      await outbox.publishMany(more.map((p) => ({ type: 'test.after', payload: p, causation_id: 'cause' })))
      tick(100)
    }
    expect(store.outbox.lastSeq()).toBe(150)
    // What a power cut does to blocks.db's unsynced WAL: every block written after the sync is gone.
    const lost = blocks.sizes().filter((b) => !synced.has(b.cid))
    blocks.remove(lost.map((b) => b.cid))
    expect(missing(store, blocks).length).toBeGreaterThan(0)

    const check = await checkOutboxBlocks(store, blocks, self)
    expect(check.lost).toEqual([])
    expect(check.durableThrough).toBe(30)
    expect(check.missing.map((m) => m.what)).toContain('root')
    expect(check.missing.filter((m) => m.what.startsWith('shards of bucket ')).map((m) => m.what)).toEqual(['shards of bucket 2026-11-29/04', 'shards of bucket 2026-11-29/05'])
    expect(check.missing.filter((m) => m.what.startsWith('file of seq '))).toHaveLength(120)

    const recovered = await recoverOutboxBlocks(store, blocks, self)
    expect(recovered).toEqual({ rebuilt: check.rebuilt.length, after: 30 })
    expect(missing(store, blocks)).toEqual([])
    // Every lost block of the head's tree came back with its CID: the rebuilt bytes are the written ones.
    const back = new Set(blocks.sizes().map((b) => b.cid))
    const reachable = new Set([...walkDag([CID.parse(store.outbox.root()!)], (cid) => blocks.getSync(cid))].map((s) => s.cid.toString()))
    expect(lost.filter((b) => reachable.has(b.cid) && !back.has(b.cid))).toEqual([])
    expect(blocksDurableThrough(store)).toBe(150)
    // The outbox goes on from the rebuilt tree.
    await outbox.publish({ type: 'test.later', payload: {} })
    expect(missing(store, blocks)).toEqual([])
  })

  test('a whole tail passes and is recorded durable, and a tail whose events row is gone stops it with the file named', async () => {
    const { outbox, blocks, store, self } = await setup()
    for (let i = 0; i < 10; i++) await outbox.publish({ type: 'test.x', payload: { i } })
    expect(await checkOutboxBlocks(store, blocks, self)).toMatchObject({ durableThrough: 0, headSeq: 10, missing: [], lost: [] })
    expect(await recoverOutboxBlocks(store, blocks, self)).toEqual({ rebuilt: 0, after: 0 })
    expect(blocksDurableThrough(store)).toBe(10)

    for (let i = 0; i < 3; i++) await outbox.publish({ type: 'test.x', payload: { i } })
    const file = store.outbox.unprunedAfter(12)[0]
    blocks.remove([file.cid])
    store.db.run('DELETE FROM events WHERE seq = 13')
    const err = await recoverOutboxBlocks(store, blocks, self).catch((e: Error) => e)
    expect(err).toMatchObject({ name: 'OutboxBlocksLostError', lost: [{ what: 'file of seq 13', cid: file.cid, reason: 'its events row is gone (events-retention?)' }] })
    expect((err as Error).message).toStartWith('Cannot start: the own outbox tree of head seq 13 misses 1 block(s) that cannot be rebuilt from cairn.db: file of seq 13')
    expect(blocksDurableThrough(store)).toBe(10)
  })
})
