import { describe, expect, test } from 'bun:test'
import { waitFor } from '../../src/node/events.ts'
import { INGEST_CHUNK } from '../../src/sync/plan.ts'
import { CollectEvery } from '../../src/sync/fetch.ts'
import { eventFile, forger, headOf, honestTree, seqsOf, victim } from '../adversary/walkForge.ts'

describe('a catch-up holds a bounded number of files at once', () => {
  test('a backlog of twice INGEST_CHUNK and more is stored in chunks of at most INGEST_CHUNK, whatever max-files-per-walk allows', async () => {
    const p = await forger()
    const n = 2 * INGEST_CHUNK + 52
    const files = []
    for (let seq = 1; seq <= n; seq++) files.push(await eventFile(p, seq))
    // max-files-per-walk 20,000 (the default) would allow the whole backlog in one chunk
    const v = await victim([p], { maxFilesPerWalk: 20_000 })
    const chunks: number[] = []
    v.events.addEventListener('events:ingested', (e) => {
      chunks.push(e.detail.length)
    })
    const idle = waitFor(v.events, 'sync:idle', { signal: AbortSignal.timeout(60_000), filter: () => v.store.producers.get(p.id)?.processed_seq === n })
    await v.syncer.offerHead(await headOf(p, n, await honestTree(p, files)))
    await idle
    expect(chunks).toEqual([INGEST_CHUNK, INGEST_CHUNK, 52])
    expect(seqsOf(v.store, p.id)).toEqual(Array.from({ length: n }, (_, i) => i + 1))
    await v.syncer.stop()
  })

  test('CollectEvery collects once each time the blocks counted pass another multiple of its period', () => {
    let collected = 0
    const c = new CollectEvery(1000, () => {
      collected++
    })
    const seen: number[] = []
    for (const n of [400, 400, 400, 4096, 10, 2000]) {
      c.add(n)
      seen.push(collected)
    }
    // 400, 800, 1,200 (past 1,000), 5,296 (past 2,000..5,000: one collection), 5,306, 7,306 (past 6,000 and 7,000)
    expect({ seen, collections: c.collections }).toEqual({ seen: [0, 0, 1, 2, 2, 3], collections: 3 })
  })

  test('a walk collects the heap as the blocks it reads add up, and a small walk never does', async () => {
    const p = await forger()
    const files = []
    for (let seq = 1; seq <= 1100; seq++) files.push(await eventFile(p, seq))
    const collections = { n: 0 }
    const v = await victim([p], {
      collectGarbage: {
        every: 100,
        collect: () => {
          collections.n++
        }
      }
    })
    const caughtUp = (seq: number) => waitFor(v.events, 'sync:idle', { signal: AbortSignal.timeout(60_000), filter: () => v.store.producers.get(p.id)?.processed_seq === seq })
    let idle = caughtUp(20)
    await v.syncer.offerHead(await headOf(p, 20, await honestTree(p, files.slice(0, 20))))
    await idle
    const small = collections.n
    idle = caughtUp(1100)
    await v.syncer.offerHead(await headOf(p, 1100, await honestTree(p, files)))
    await idle
    // 1,080 files (one batch) and the shards of a 1,100-file bucket (a few hundred, a batch per level)
    expect({ small, large: collections.n >= 2, stored: seqsOf(v.store, p.id).length }).toEqual({ small: 0, large: true, stored: 1100 })
    await v.syncer.stop()
  })

  test('many small walks, one after the other, collect the heap as their blocks add up together', async () => {
    const p = await forger()
    const files = []
    for (let seq = 1; seq <= 200; seq++) files.push(await eventFile(p, seq))
    const collections = { n: 0 }
    const v = await victim([p], {
      collectGarbage: {
        every: 100,
        collect: () => {
          collections.n++
        }
      }
    })
    // Twenty walks of ten files each: none reads 100 blocks, together they read more than 200.
    for (let top = 10; top <= 200; top += 10) {
      const idle = waitFor(v.events, 'sync:idle', { signal: AbortSignal.timeout(60_000), filter: () => v.store.producers.get(p.id)?.processed_seq === top })
      await v.syncer.offerHead(await headOf(p, top, await honestTree(p, files.slice(0, top))))
      await idle
    }
    expect(seqsOf(v.store, p.id).length).toBe(200)
    expect(collections.n).toBeGreaterThanOrEqual(2)
    await v.syncer.stop()
  })
})
