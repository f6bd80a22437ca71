import { describe, expect, test } from 'bun:test'
import { waitFor } from '../../src/node/events.ts'
import { INGEST_CHUNK } from '../../src/sync/plan.ts'
import { CollectEvery } from '../../src/sync/fetch.ts'
import type { Log } from '../../src/log/logger.ts'
import { eventFile, forger, headOf, honestTree, seqsOf, victim, type Forger } from '../adversary/walkForge.ts'
import type { DirEntry } from '../../src/unixfs/tree.ts'

/** @returns `count` event files of `p`, seqs 1 to `count` */
async function filesOf(p: Forger, count: number): Promise<DirEntry[]> {
  const files: DirEntry[] = []
  for (let seq = 1; seq <= count; seq++) files.push(await eventFile(p, seq))
  return files
}

/** A collection of the heap that only counts itself, once per `every` blocks the walks read. */
function countedCollections(every: number): { collections: { n: number }; collectGarbage: { every: number; collect: () => void } } {
  const collections = { n: 0 }
  return {
    collections,
    collectGarbage: {
      every,
      collect: () => {
        collections.n++
      }
    }
  }
}

describe('a catch-up holds a bounded number of files at once', () => {
  test('a backlog of twice INGEST_CHUNK and more is stored in chunks of at most INGEST_CHUNK, whatever max-files-per-walk allows', async () => {
    const p = await forger()
    const n = 2 * INGEST_CHUNK + 52
    const files = await filesOf(p, n)
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

  test('a walk collects the heap as the blocks it reads add up, and a small walk alone never does', async () => {
    const p = await forger()
    const files = await filesOf(p, 1100)
    const { collections, collectGarbage } = countedCollections(100)
    const v = await victim([p], { collectGarbage })
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
    const files = await filesOf(p, 200)
    const { collections, collectGarbage } = countedCollections(100)
    const v = await victim([p], { collectGarbage })
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

  test("walks under way at once each report the collections their own blocks set off, not each other's", async () => {
    const p = await forger()
    const q = await forger()
    const pRoot = await honestTree(p, await filesOf(p, 5))
    const qRoot = await honestTree(q, await filesOf(q, 150))
    const lines: string[] = []
    const log: Log = {
      debug(message) {
        lines.push(message)
      },
      info() {},
      warn() {},
      error() {},
      child: () => log
    }
    const { collections, collectGarbage } = countedCollections(100)
    let qStored = (): void => {}
    const qDone = new Promise<void>((resolve) => {
      qStored = resolve
    })
    // p's walk starts first and waits on its root while q's walk reads its 150 files and their bucket's
    // shards (past 100 blocks: at least one collection); p's blocks are counted after q's.
    const v = await victim([p, q], {
      log,
      before: async (cid) => {
        if (cid.equals(pRoot)) await qDone
      },
      collectGarbage
    })
    v.events.addEventListener('events:ingested', () => {
      if (v.store.producers.get(q.id)?.processed_seq === 150) qStored()
    })
    const idle = waitFor(v.events, 'sync:idle', {
      signal: AbortSignal.timeout(60_000),
      filter: () => v.store.producers.get(p.id)?.processed_seq === 5 && v.store.producers.get(q.id)?.processed_seq === 150
    })
    await v.syncer.offerHead(await headOf(p, 5, pRoot))
    await v.syncer.offerHead(await headOf(q, 150, qRoot))
    await idle
    const reported = (producer: string): number[] =>
      lines.flatMap((l) => {
        const m = new RegExp(`^walked ${producer}: .* (\\d+) collection\\(s\\) of the heap`).exec(l)
        return m == null ? [] : [Number(m[1])]
      })
    const [pShare, qShare] = [reported(p.id), reported(q.id)]
    expect({ walks: [pShare.length, qShare.length], qCollected: qShare[0] >= 1, shares: pShare[0] + qShare[0] }).toEqual({ walks: [1, 1], qCollected: true, shares: collections.n })
    await v.syncer.stop()
  })
})
