import { describe, expect, test } from 'bun:test'
import { CID } from 'multiformats/cid'
import { openBlockDatabase, SqliteBlockstore, type StoredBlock } from '../../src/store/blockstore.ts'
import type { Store } from '../../src/store/store.ts'
import { waitFor } from '../../src/node/events.ts'
import { type BlockFetcher, WALK_BATCH_BLOCKS, WALK_BATCH_BYTES, WALK_PENDING_BLOCKS, WALK_PENDING_BYTES } from '../../src/p2p/blockFetcher.ts'
import { fetcherOver, hintedConsumer, hintedProducer } from '../helpers/hinted.ts'
import { withBlocks } from '../../src/model/head.ts'
import { randomBlock } from '../adversary/helpers.ts'
import { waitFor as until } from '../helpers/process.ts'

/** A fetcher over `blocks` with no network: every block a walk reads must come from the hints or the store. */
function offlineFetcher(blocks: SqliteBlockstore): BlockFetcher {
  return fetcherOver(
    blocks,
    () => {
      throw new Error('no network in this test')
    },
    5000
  )
}

/** @returns the sizes of the transactions `blocks.putAll` runs from now on (in blocks and bytes), and what it was asked to store */
function countPuts(blocks: SqliteBlockstore): { calls: Array<{ n: number; bytes: number }>; cids: Set<string> } {
  const seen = { calls: [] as Array<{ n: number; bytes: number }>, cids: new Set<string>() }
  const putAll = blocks.putAll.bind(blocks)
  blocks.putAll = (list, options) => {
    const arr = [...list]
    seen.calls.push({ n: arr.length, bytes: arr.reduce((s, b) => s + b.bytes.length, 0) })
    for (const b of arr) seen.cids.add(b.cid.toString())
    putAll(arr, options)
  }
  return seen
}

/** A producer's outbox, and a consumer's syncer reading through a fetcher with no network. */
async function hintedPair() {
  return { ...(await hintedProducer()), ...(await hintedConsumer(offlineFetcher, 5000)) }
}

/** @returns commit `c`'s hint: its signed head carrying the blocks it wrote */
const hintOf = (c: { head: Uint8Array; blocks: StoredBlock[] }): Uint8Array => withBlocks(c.head, c.blocks)

describe('the blocks a walk takes from the hints', () => {
  test('are stored in one transaction per walk, each before the rows that depend on it, and every put is tracked', async () => {
    const { outbox, commits, store, blocks, syncer, events } = await hintedPair()
    const tracker = blocks.track(10_000)
    const puts = countPuts(blocks)
    // When an event's row goes in, its file and the directories above it are stored already.
    const missingAtInsert: string[] = []
    const add = store.events.add.bind(store.events)
    store.events.add = (envelope, cid, now) => {
      if (!blocks.has(CID.parse(cid))) missingAtInsert.push(cid)
      return add(envelope, cid, now)
    }
    for (let i = 0; i < 3; i++) {
      await outbox.publish({ type: 'test.hinted', payload: { i } })
      const head = hintOf(commits[i])
      const idle = waitFor(events, 'sync:idle', { signal: AbortSignal.timeout(10_000) })
      await syncer.offerHead(head)
      await idle
    }
    await syncer.stop()
    expect(eventRows(store)).toBe(3)
    expect(missingAtInsert).toEqual([])
    // One transaction per walk, holding every block the walk took (the commit's file and its directories).
    expect(puts.calls.map((c) => c.n)).toEqual(commits.map((c) => c.blocks.length))
    expect(Math.min(...puts.calls.map((c) => c.n))).toBeGreaterThan(1)
    for (const c of commits) for (const b of c.blocks) expect(tracker.has(b.cid.toString())).toBe(true)
    tracker.stop()
  })

  test('a store that fails records nothing that depends on it, and the walk fails', async () => {
    const { outbox, commits, store, blocks, syncer } = await hintedPair()
    blocks.putAll = () => {
      throw new Error('disk full')
    }
    await outbox.publish({ type: 'test.hinted', payload: {} })
    await syncer.offerHead(hintOf(commits[0]))
    const producer = producerOf(store)
    await until('the walk to fail', () => store.producers.get(producer)?.last_error != null, 10_000)
    await syncer.stop()
    const row = store.producers.get(producer)!
    expect(row.last_error).toContain('disk full')
    expect(row.processed_seq).toBe(0)
    expect(eventRows(store)).toBe(0)
  })

  test('a walk stores at most WALK_BATCH_BLOCKS blocks and WALK_BATCH_BYTES in one transaction', async () => {
    const blocks = new SqliteBlockstore(await openBlockDatabase(':memory:'))
    const fetcher = offlineFetcher(blocks)
    const puts = countPuts(blocks)
    const signal = AbortSignal.timeout(10_000)
    // Many small blocks: transactions of the count bound.
    const small = await Promise.all(Array.from({ length: WALK_BATCH_BLOCKS * 2 + 10 }, async () => await randomBlock(64)))
    fetcher.keepHinted(small)
    const batch = fetcher.batch()
    for (const b of small) await fetcher.get(b.cid, { signal, batch })
    batch.flush()
    expect(puts.calls.map((c) => c.n)).toEqual([WALK_BATCH_BLOCKS, WALK_BATCH_BLOCKS, 10])
    // Larger blocks (2 MiB in all, what the hinted blocks hold at most): transactions under the byte bound, a larger block alone.
    puts.calls.length = 0
    const large = await Promise.all([300, 300, 300, 1100, 40].map(async (k) => await randomBlock(k * 1024)))
    fetcher.keepHinted(large)
    for (const b of large) await fetcher.get(b.cid, { signal, batch })
    batch.end()
    expect(puts.calls.map((c) => c.n)).toEqual([3, 1, 1])
    for (const c of puts.calls) if (c.n > 1) expect(c.bytes).toBeLessThanOrEqual(WALK_BATCH_BYTES)
    // Once the walk ended, a block a fetch still under way takes is stored at once.
    const late = await randomBlock(64)
    fetcher.keepHinted([late])
    await fetcher.get(late.cid, { signal, batch })
    expect(blocks.has(late.cid)).toBe(true)
    for (const b of [...small, ...large, late]) expect(blocks.has(b.cid)).toBe(true)
  })

  test('the walks under way hold at most WALK_PENDING_BYTES unstored together, however many producers walk', async () => {
    const blocks = new SqliteBlockstore(await openBlockDatabase(':memory:'))
    const fetcher = offlineFetcher(blocks)
    const puts = countPuts(blocks)
    const signal = AbortSignal.timeout(10_000)
    // One walk per producer, each taking a hint's worth of blocks and then waiting (a block nobody sends).
    const walks = 12
    let taken = 0
    let most = 0
    const batches = Array.from({ length: walks }, () => fetcher.batch())
    for (const batch of batches) {
      const hint = await Promise.all(Array.from({ length: 15 }, async () => await randomBlock(64 * 1024)))
      fetcher.keepHinted(hint)
      for (const b of hint) {
        await fetcher.get(b.cid, { signal, batch })
        taken += b.bytes.length
        most = Math.max(most, taken - puts.calls.reduce((n, c) => n + c.bytes, 0))
      }
    }
    expect(taken).toBeGreaterThan(2 * WALK_PENDING_BYTES)
    expect(most).toBeLessThanOrEqual(WALK_PENDING_BYTES)
    for (const batch of batches) batch.end()
    expect(puts.calls.reduce((n, c) => n + c.bytes, 0)).toBe(taken)

    // Tiny blocks: the number held is bounded too.
    puts.calls.length = 0
    let count = 0
    let mostBlocks = 0
    const tiny = Array.from({ length: walks }, () => fetcher.batch())
    for (const batch of tiny) {
      const hint = await Promise.all(Array.from({ length: WALK_BATCH_BLOCKS - 1 }, async () => await randomBlock(8)))
      fetcher.keepHinted(hint)
      for (const b of hint) {
        await fetcher.get(b.cid, { signal, batch })
        count++
        mostBlocks = Math.max(mostBlocks, count - puts.calls.reduce((n, c) => n + c.n, 0))
      }
    }
    expect(mostBlocks).toBeLessThanOrEqual(WALK_PENDING_BLOCKS)
    for (const batch of tiny) batch.end()
    expect(puts.calls.reduce((n, c) => n + c.n, 0)).toBe(count)
  })

  test('a block one walk holds unstored is at hand for another walk that needs it, at once', async () => {
    const blocks = new SqliteBlockstore(await openBlockDatabase(':memory:'))
    // No peer has anything: a block that is not at hand fails at once.
    const fetcher = offlineFetcher(blocks)
    const signal = AbortSignal.timeout(10_000)
    const shared = await randomBlock(64)
    fetcher.keepHinted([shared])
    const first = fetcher.batch()
    const second = fetcher.batch()
    // Two trees share a block (or a member's tree reaches another's): the first walk takes it from the hints.
    await fetcher.get(shared.cid, { signal, batch: first })
    expect(blocks.has(shared.cid)).toBe(false)
    expect(await fetcher.get(shared.cid, { signal, batch: second })).toEqual(shared.bytes)
    const many = await fetcher.getMany('p', [shared.cid], { signal, onBlocks: () => {}, batch: second })
    expect(many.get(shared.cid.toString())).toEqual(shared.bytes)
    expect(blocks.has(shared.cid)).toBe(true)
    first.end()
    second.end()
  })

  test('walks whose store failed hold nothing they take after, and count nothing against the others', async () => {
    const blocks = new SqliteBlockstore(await openBlockDatabase(':memory:'))
    const fetcher = offlineFetcher(blocks)
    const signal = AbortSignal.timeout(10_000)
    const putAll = blocks.putAll.bind(blocks)
    blocks.putAll = () => {
      throw new Error('disk full')
    }
    // A disk full for a while: walks fail, each going on taking blocks until it stops.
    for (let w = 0; w < 5; w++) {
      const failing = fetcher.batch()
      for (let i = 0; i < 11; i++) {
        const b = await randomBlock(200 * 1024)
        fetcher.keepHinted([b])
        await fetcher.get(b.cid, { signal, batch: failing }).catch(() => {})
      }
      expect(() => failing.end()).toThrow('disk full')
    }
    blocks.putAll = putAll
    // A walk after them holds its blocks up to its own bound: nothing of the failed ones is counted.
    const puts = countPuts(blocks)
    const other = fetcher.batch()
    for (let i = 0; i < 4; i++) {
      const b = await randomBlock(200 * 1024)
      fetcher.keepHinted([b])
      await fetcher.get(b.cid, { signal, batch: other })
    }
    expect(puts.calls).toEqual([])
    other.end()
    expect(puts.calls.map((c) => c.n)).toEqual([4])
  })
})

/** @returns how many rows `events` holds */
function eventRows(store: Store): number {
  return store.db.get<{ n: number }>('SELECT count(*) AS n FROM events')?.n ?? 0
}

/** @returns the one producer row of another node in `store` */
function producerOf(store: Store): string {
  return store.db.get<{ producer: string }>("SELECT producer FROM producers WHERE producer != 'consumer' LIMIT 1")?.producer ?? ''
}
