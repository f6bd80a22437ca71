import { describe, expect, test } from 'bun:test'
import fc from 'fast-check'
import type * as dagPb from '@ipld/dag-pb'
import type { CID } from 'multiformats/cid'
import { waitFor } from '../../src/node/events.ts'
import { fileName } from '../../src/model/layout.ts'
import type { DirEntry } from '../../src/unixfs/tree.ts'
import { eventFile, forger, headOf, honestTree, rawShard, rootOver, seqsOf, uuid, victim, type Forger } from './walkForge.ts'

/** Scale: CI-sized by default; FAULTS_SCALE=10 for the on-demand run (see RELIABILITY.md). */
const SCALE = Number(process.env.FAULTS_SCALE ?? 1)

async function offer(v: Awaited<ReturnType<typeof victim>>, head: Uint8Array): Promise<number> {
  const before = v.reads.n
  const idle = waitFor(v.events, 'sync:idle', { signal: AbortSignal.timeout(60_000) })
  await v.syncer.offerHead(head)
  await idle
  return v.reads.n - before
}

/** Block reads a walk may cost: per new event (and once more for the walk) its day, hour, file and shards on its path. */
const bound = (newEvents: number, total: number): number => 4 * (newEvents + 1) * (Math.ceil(Math.log2(total + 1) / 4) + 3)

/** A crafted bucket: what a hostile member may put under one hour. */
type Craft =
  | { kind: 'shared'; levels: number }
  | { kind: 'misplaced'; bitmap: Bitmap }
  | { kind: 'duplicate'; n: number }
  | { kind: 'chain'; depth: number; bitmap: Bitmap }
  | { kind: 'fanout'; fanout: number }
/** the shards' bitmap: every slot (read by the generic decoders), or the links' (cairn's layout, read without them) */
type Bitmap = 'full' | 'links'

async function crafted(p: Forger, c: Craft): Promise<CID> {
  const file = await eventFile(p, 1)
  const link = (label: string, e: { cid: CID; size: number; name?: string }): dagPb.PBLink => ({ Name: label + (e.name ?? ''), Hash: e.cid, Tsize: e.size })
  switch (c.kind) {
    case 'shared': {
      let below = await rawShard(
        p,
        Array.from({ length: 16 }, (_, i) => link(i.toString(16).toUpperCase(), { ...file, name: fileName(i + 1, uuid()) }))
      )
      for (let l = 0; l < c.levels; l++) {
        const s = below
        below = await rawShard(
          p,
          Array.from({ length: 16 }, (_, i) => link(i.toString(16).toUpperCase(), s))
        )
      }
      return await rootOver(p, below)
    }
    case 'misplaced': {
      // every file in slot 0, whatever its name hashes to (a few may belong there: at least one will not)
      const files = await Promise.all([1, 2, 3, 4].map(async (s) => await eventFile(p, s)))
      return await rootOver(p, await rawShard(p, [link('0', files[0]), ...files.slice(1).map((f, i) => link((i + 1).toString(16).toUpperCase(), f))], 16, c.bitmap))
    }
    case 'duplicate': {
      const files: DirEntry[] = []
      for (let s = 1; s <= c.n; s++) files.push(await eventFile(p, s))
      files.push(await eventFile(p, 1))
      return await honestTree(p, files)
    }
    case 'chain': {
      // a chain of single-shard shards ending in one file: non-canonical below the root
      let below = await rawShard(p, [link('0', file)], 16, c.bitmap)
      for (let l = 0; l < c.depth; l++) below = await rawShard(p, [link('0', below)], 16, c.bitmap)
      return await rootOver(p, below)
    }
    case 'fanout':
      return await rootOver(p, await rawShard(p, [link('0'.repeat((c.fanout - 1).toString(16).length), file)], c.fanout))
  }
}

const craft: fc.Arbitrary<Craft> = fc.oneof(
  fc.record({ kind: fc.constant('shared' as const), levels: fc.integer({ min: 1, max: 6 }) }),
  fc.record({ kind: fc.constant('misplaced' as const), bitmap: fc.constantFrom<Bitmap>('full', 'links') }),
  fc.record({ kind: fc.constant('duplicate' as const), n: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant('chain' as const), depth: fc.integer({ min: 1, max: 40 }), bitmap: fc.constantFrom<Bitmap>('full', 'links') }),
  fc.record({ kind: fc.constant('fanout' as const), fanout: fc.constantFrom(2, 4, 32, 64, 128, 512, 1024) })
)

describe('adversary: walk properties', () => {
  test('honest head sequences: every event ingested exactly once, no gaps, reads proportional to the new events', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 25 * SCALE }), { minLength: 1, maxLength: 5 }), async (steps) => {
        const p = await forger()
        const v = await victim([p], { maxFilesPerWalk: 7 })
        const files: DirEntry[] = []
        for (const step of steps) {
          const from = files.length
          for (let i = 0; i < step; i++) files.push(await eventFile(p, files.length + 1))
          const reads = await offer(v, await headOf(p, files.length, await honestTree(p, files)))
          expect(reads).toBeLessThanOrEqual(bound(files.length - from, files.length))
        }
        expect(seqsOf(v.store, p.id)).toEqual(files.map((_, i) => i + 1))
        expect(v.store.gaps.list()).toEqual([])
        await v.syncer.stop()
      }),
      { numRuns: 8 * SCALE }
    )
  })

  test('crafted trees: refused within a bounded number of reads, honest events of another producer all arrive once', async () => {
    await fc.assert(
      fc.asyncProperty(craft, fc.integer({ min: 1, max: 2 ** 40 }), fc.integer({ min: 1, max: 20 * SCALE }), async (c, seq, honestN) => {
        const bad = await forger()
        const good = await forger()
        const v = await victim([bad, good])
        const reads = await offer(v, await headOf(bad, seq, await crafted(bad, c)))
        // a crafted tree holds no real new event beyond what it names: the cost is that of a walk to them
        expect(reads).toBeLessThanOrEqual(bound(c.kind === 'duplicate' ? c.n : 1, 64))
        expect(v.store.producers.get(bad.id)?.last_error).toBeString()
        const files: DirEntry[] = []
        for (let s = 1; s <= honestN; s++) files.push(await eventFile(good, s))
        await offer(v, await headOf(good, honestN, await honestTree(good, files)))
        expect(seqsOf(v.store, good.id)).toEqual(files.map((_, i) => i + 1))
        await v.syncer.stop()
      }),
      { numRuns: 25 * SCALE }
    )
  })
})
