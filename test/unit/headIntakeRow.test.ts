import { describe, expect, test } from 'bun:test'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { Store } from '../../src/store/store.ts'
import { syncer as createSyncer, type Syncer } from '../../src/sync/syncer.ts'
import { HybridClock } from '../../src/model/hlc.ts'
import { CairnEventBus } from '../../src/node/events.ts'
import { Metrics } from '../../src/metrics/metrics.ts'
import { silentLog } from '../../src/log/logger.ts'
import { signHead, verifyHeadMessage } from '../../src/model/head.ts'
import { mintProducer, randomBlock } from '../adversary/helpers.ts'

/** @returns head `seq` of `p`, stamped `seq` ms after a fixed time, over a root nobody holds */
async function headOf(p: Awaited<ReturnType<typeof mintProducer>>, seq: number): Promise<Uint8Array> {
  const root = (await randomBlock(32)).cid.toString()
  return await signHead({ producer: p.id, seq, root, hlc: `${Date.now() - 60_000 + seq}-0000`, acks: {} }, p.key)
}

/** A stopped syncer whose members are `members`: heads offered are judged and stored, never walked. */
async function intake(members: Set<string>): Promise<{ syncer: Syncer; store: Store; reads: () => number }> {
  const db = await openDatabase(':memory:')
  migrate(db)
  const store = new Store(db)
  let reads = 0
  const get = store.producers.get.bind(store.producers)
  store.producers.get = (producer) => {
    reads++
    return get(producer)
  }
  const syncer = createSyncer({
    getBlock: async () => await Promise.reject(new Error('no walk in this test')),
    isMember: (p) => members.has(p),
    limits: { maxEventSize: 256 * 1024, maxDepth: 64, maxFilesPerWalk: 1000 },
    fetchTimeout: 60_000
  })({ self: 'consumer', store, clock: new HybridClock(), log: silentLog, metrics: new Metrics(), events: new CairnEventBus() })
  await syncer.stop()
  return { syncer, store, reads: () => reads }
}

describe('head intake after the gossip validator', () => {
  test('takes the producer row the validator read, unless producers were written since or the membership changed', async () => {
    const p = await mintProducer()
    const members = new Set([p.id])
    const { syncer, store, reads } = await intake(members)
    // The validator judges a hint, then intake applies the same message: the row is read once.
    const first = await headOf(p, 1)
    expect(syncer.judge(await verifyHeadMessage(first)).verdict).toBe('new')
    const before = reads()
    expect(await syncer.offerHead(first)).toBe('new')
    expect(reads() - before).toBe(0)

    // A newer head arrives by another path between the validator and intake: the stale row is not used.
    const second = await headOf(p, 2)
    const third = await headOf(p, 3)
    expect(syncer.judge(await verifyHeadMessage(second)).verdict).toBe('new')
    expect(await syncer.offerHead(third)).toBe('new')
    expect(await syncer.offerHead(second)).toBe('old')
    expect(store.producers.get(p.id)?.head_seq).toBe(3)

    // A membership change between the validator and intake refuses the head the validator let through.
    const fourth = await headOf(p, 4)
    expect(syncer.judge(await verifyHeadMessage(fourth)).verdict).toBe('new')
    members.delete(p.id)
    await expect(syncer.offerHead(fourth)).rejects.toThrow(/not in the members list/)
    expect(store.producers.get(p.id)?.head_seq).toBe(3)
  })
})
