import { describe, expect, test } from 'bun:test'
import type { CID } from 'multiformats/cid'
import { waitFor } from '../../src/node/events.ts'
import { readDirectoryNode, readOwnDirectoryNode, shardedDirectory } from '../../src/unixfs/hamt.ts'
import { directoryBomb, eventFile, forger, headOf, honestTree, rawShard, rootOver, seqsOf, victim, type Forger } from './walkForge.ts'

/** Offers heads to the victim and waits until its syncer is idle again. */
async function offer(v: Awaited<ReturnType<typeof victim>>, ...heads: Uint8Array[]): Promise<void> {
  const idle = waitFor(v.events, 'sync:idle', { signal: AbortSignal.timeout(60_000) })
  for (const h of heads) await v.syncer.offerHead(h)
  await idle
}

/**
 * An honest producer's head over events 1..n. Each seq keeps its event_id from one head to the next (as an
 * honest outbox does), so the bucket's shards, and the reads the test counts, are the same on every run.
 */
async function honest(p: Forger, n: number): Promise<Uint8Array> {
  const files = []
  for (let seq = 1; seq <= n; seq++) files.push(await eventFile(p, seq, `0190a000-0000-7000-8000-${seq.toString(16).padStart(12, '0')}`))
  return await headOf(p, n, await honestTree(p, files))
}

describe('adversary: freeze the walk with one head', () => {
  test('seq bomb: a head with seq 1e12, then 2^53 − 1, over a one-file tree records one gap each and honest events keep arriving', async () => {
    const bomber = await forger()
    const other = await forger()
    const v = await victim([bomber, other])
    const one = await eventFile(bomber, 1)
    await offer(v, await headOf(bomber, 1e12, await honestTree(bomber, [one])), await honest(other, 3))
    expect(seqsOf(v.store, bomber.id)).toEqual([1])
    expect(seqsOf(v.store, other.id)).toEqual([1, 2, 3])
    const gaps = () => v.store.gaps.list().map((g) => [g.from_seq, g.to_seq])
    expect(gaps()).toEqual([[2, 1e12]])

    // File names hold 12 digits: no file can sit above 1e12, whatever the head claims.
    await offer(v, await headOf(bomber, Number.MAX_SAFE_INTEGER, await honestTree(bomber, [one], '13')), await honest(other, 5))
    expect(seqsOf(v.store, bomber.id)).toEqual([1])
    expect(gaps()).toEqual([
      [2, 1e12],
      [1e12 + 1, Number.MAX_SAFE_INTEGER]
    ])
    expect(v.store.producers.get(bomber.id)?.processed_seq).toBe(Number.MAX_SAFE_INTEGER)
    expect(seqsOf(v.store, other.id)).toEqual([1, 2, 3, 4, 5])
    await v.syncer.stop()
  })

  test('directory bomb: shared HAMT shards are refused after a few block reads, the root is not walked again, honest events keep arriving', async () => {
    const bomber = await forger()
    const other = await forger()
    const v = await victim([bomber, other])
    // 16^5 = 1,048,576 entries from six small blocks
    const bomb = await directoryBomb(bomber, 5)
    await offer(v, await headOf(bomber, 1_000_000, bomb), await honest(other, 2))
    // root, day, the bucket's root shard: the second link to the same shard is refused before it is read
    expect(v.reads.n).toBeLessThanOrEqual(3 + 2 * 3)
    const row = v.store.producers.get(bomber.id)
    expect(row?.last_error).toContain('repeated_directory')
    expect(row?.processed_seq).toBe(0)
    expect(seqsOf(v.store, bomber.id)).toEqual([])
    expect(seqsOf(v.store, other.id)).toEqual([1, 2])

    // The same root is not walked again (a restart, a retry); a newer honest tree of the bomber is.
    const before = v.reads.n
    v.syncer.schedule(bomber.id)
    await offer(v, await honest(other, 4))
    expect(v.reads.n - before).toBeLessThanOrEqual(6)
    expect(seqsOf(v.store, other.id)).toEqual([1, 2, 3, 4])
    const files = [await eventFile(bomber, 1), await eventFile(bomber, 2)]
    await offer(v, await headOf(bomber, 1_000_000, await honestTree(bomber, files)))
    expect(seqsOf(v.store, bomber.id)).toEqual([1, 2])
    expect(v.store.gaps.list().map((g) => [g.from_seq, g.to_seq])).toEqual([[3, 1_000_000]])
    await v.syncer.stop()
  })

  test('misplaced names, a foreign fanout, duplicate seqs and seqs above the head are refused, with the reason in last_error', async () => {
    const cases: Array<[string, (p: Forger) => Promise<{ root: CID; seq: number }>]> = [
      [
        'non_canonical_hamt',
        async (p) => {
          // a file one slot away from the one its name hashes to
          const a = await eventFile(p, 1)
          const label = readDirectoryNode((await shardedDirectory([a])).root.bytes).entries[0].label
          const wrong = ((parseInt(label, 16) + 1) % 16).toString(16).toUpperCase()
          return { root: await rootOver(p, await rawShard(p, [{ Name: wrong + a.name, Hash: a.cid, Tsize: a.size }])), seq: 1 }
        }
      ],
      [
        'non_canonical_hamt',
        async (p) => {
          // the same, in exactly the layout cairn writes: read without the generic decoders, refused the same
          const a = await eventFile(p, 1)
          const label = readDirectoryNode((await shardedDirectory([a])).root.bytes).entries[0].label
          const wrong = ((parseInt(label, 16) + 1) % 16).toString(16).toUpperCase()
          const shard = await rawShard(p, [{ Name: wrong + a.name, Hash: a.cid, Tsize: a.size }], 16, 'links')
          expect(readOwnDirectoryNode(p.blocks.get(shard.cid.toString())!)?.entries.map((e) => e.label)).toEqual([wrong])
          return { root: await rootOver(p, shard), seq: 1 }
        }
      ],
      [
        'malformed_directory',
        async (p) => {
          const a = await eventFile(p, 1)
          return { root: await rootOver(p, await rawShard(p, [{ Name: `000${a.name}`, Hash: a.cid, Tsize: a.size }], 1024)), seq: 1 }
        }
      ],
      [
        'duplicate_seq',
        async (p) => {
          const a = await eventFile(p, 1)
          const b = await eventFile(p, 1)
          return { root: await honestTree(p, [a, b]), seq: 1 }
        }
      ],
      [
        'seq_above_head',
        async (p) => {
          return { root: await honestTree(p, [await eventFile(p, 1), await eventFile(p, 7)]), seq: 2 }
        }
      ]
    ]
    for (const [reason, build] of cases) {
      const p = await forger()
      const v = await victim([p])
      const { root, seq } = await build(p)
      await offer(v, await headOf(p, seq, root))
      expect({ reason, error: v.store.producers.get(p.id)?.last_error?.includes(reason) }).toEqual({ reason, error: true })
      expect(seqsOf(v.store, p.id)).toEqual([])
      await v.syncer.stop()
    }
  })
})
