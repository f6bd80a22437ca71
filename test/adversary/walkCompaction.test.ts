import { describe, expect, test } from 'bun:test'
import type { CID } from 'multiformats/cid'
import { signHead } from '../../src/model/head.ts'
import { waitFor } from '../../src/node/events.ts'
import { shardedDirectory } from '../../src/unixfs/hamt.ts'
import { directoryBlock, type DirEntry } from '../../src/unixfs/tree.ts'
import { eventFile, forger, put, seqsOf, victim, type Forger } from './walkForge.ts'

/** @returns the root of a tree with one day of `hours` buckets, the files of each */
async function hoursTree(p: Forger, hours: DirEntry[][]): Promise<CID> {
  const entries: DirEntry[] = []
  for (const [h, files] of hours.entries()) {
    const bucket = await shardedDirectory(files)
    for (const b of bucket.blocks) put(p, b)
    entries.push({ name: String(h).padStart(2, '0'), cid: bucket.root.cid, size: bucket.root.size })
  }
  const day = put(p, await directoryBlock(entries))
  return put(p, await directoryBlock([{ name: '2026-01-01', cid: day, size: 1 }]))
}

describe('a walk after compaction', () => {
  test('reads the directories compaction changed when the signed head counts the files compacted, with no new event', async () => {
    const p = await forger()
    const hours: DirEntry[][] = []
    for (let h = 0; h < 20; h++) {
      const files: DirEntry[] = []
      for (let i = 1; i <= 20; i++) files.push(await eventFile(p, h * 20 + i))
      hours.push(files)
    }
    // max-files-per-walk 5: the allowance alone is 5 directories, the cap 250
    const full = await signHead({ producer: p.id, seq: 400, root: (await hoursTree(p, hours)).toString(), hlc: `${++p.hlc}-0000`, acks: {} }, p.key)
    // Compaction takes two files out of every hour bucket: 22 directories and their shards change, no seq is new.
    const root = (
      await hoursTree(
        p,
        hours.map((files) => files.slice(2))
      )
    ).toString()
    const silent = await signHead({ producer: p.id, seq: 400, root, hlc: `${++p.hlc}-0000`, acks: {} }, p.key)
    const counted = await signHead({ producer: p.id, seq: 400, root, hlc: `${++p.hlc}-0000`, acks: {}, pruned_plain: 0, compacted: 40 }, p.key)
    const outcome = async (after: Uint8Array): Promise<{ error: string | null; synced: string | null | undefined; since: number | undefined; events: number }> => {
      const v = await victim([p], { maxFilesPerWalk: 5 })
      for (const head of [full, after]) {
        const idle = waitFor(v.events, 'sync:idle', { signal: AbortSignal.timeout(60_000) })
        await v.syncer.offerHead(head)
        await idle
      }
      const row = v.store.producers.get(p.id)
      await v.syncer.stop()
      return { error: row?.last_error ?? null, synced: row?.synced_root, since: row?.synced_compacted, events: seqsOf(v.store, p.id).length }
    }
    // A head that does not say what it compacted is held to the budget of its new events: none.
    expect((await outcome(silent)).error).toContain('over_budget')
    expect(await outcome(counted)).toEqual({ error: null, synced: root, since: 40, events: 400 })
  })
})
