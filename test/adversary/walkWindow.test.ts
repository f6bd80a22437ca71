import { describe, expect, test } from 'bun:test'
import { waitFor } from '../../src/node/events.ts'
import { RemoteDirsTable } from '../../src/store/remoteDirs.ts'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { listChanges } from '../../src/sync/listing.ts'
import { SeqWindow, WalkBudget, type Candidate } from '../../src/sync/plan.ts'
import { silentLog } from '../../src/log/logger.ts'
import { eventFile, forger, headOf, honestTree, seqsOf, victim } from './walkForge.ts'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import * as raw from 'multiformats/codecs/raw'

const cid = CID.create(1, raw.code, await sha256.digest(new Uint8Array([1])))
const candidate = (seq: number): Candidate => ({ seq, eventId: `e${seq}`, cid: cid.bytes, path: `p${seq}`, size: 100 })

describe('a walk holds a bounded window of seqs', () => {
  test('SeqWindow keeps the lowest seqs in at most twice its size, and still refuses a seq found twice', () => {
    const w = new SeqWindow(10)
    let most = 0
    // 1,000 seqs in a shuffled order, offered one directory of 7 at a time
    const seqs = Array.from({ length: 1000 }, (_, i) => ((i * 389) % 1000) + 1)
    for (let i = 0; i < seqs.length; i += 7) {
      w.add({ candidates: seqs.slice(i, i + 7).map(candidate), refused: [] })
      most = Math.max(most, (w as unknown as { items: unknown[] }).items.length)
    }
    const pass = w.finish(5000)
    expect({ seqs: pass.candidates.map((c) => c.seq), top: pass.top, complete: pass.complete }).toEqual({ seqs: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], top: 10, complete: false })
    expect(most).toBeLessThan(20)

    const dup = new SeqWindow(3)
    dup.add({ candidates: [5, 6, 7, 8, 9, 10].map(candidate), refused: [] })
    expect(() => dup.add({ candidates: [candidate(7)], refused: [] })).toThrow('seq 7 is in the tree twice')
    const all = new SeqWindow(10)
    all.add({ candidates: [3, 1, 2].map(candidate), refused: [{ path: 'x', seq: 4, rejection: { reason: 'oversized', detail: '' } }] })
    const p = all.finish(9)
    expect({ seqs: p.candidates.map((c) => c.seq), oversized: p.oversized.map((r) => r.seq), top: p.top, complete: p.complete }).toEqual({ seqs: [1, 2, 3], oversized: [4], top: 9, complete: true })
  })

  test('one listing of a 600-file tree keeps only the 50 lowest seqs and says where the next pass starts', async () => {
    const p = await forger()
    const files = []
    for (let seq = 1; seq <= 600; seq++) files.push(await eventFile(p, seq))
    const root = await honestTree(p, files)
    const db = await openDatabase(':memory:')
    migrate(db)
    const window = { processedSeq: 0, headSeq: 600, maxEventSize: 1 << 20 }
    const fetcher = {
      producer: p.id,
      getBlock: async (c: CID) => p.blocks.get(c.toString()) ?? Promise.reject(new Error('missing')),
      fetchTimeout: 1000,
      signal: new AbortController().signal,
      progressed: () => {},
      log: silentLog
    }
    const listing = await listChanges(fetcher, root, new RemoteDirsTable(db), window, new WalkBudget(window, 10), 50)
    expect({ n: listing.candidates.length, first: listing.candidates[0].seq, top: listing.top, complete: listing.complete, walked: listing.walked.size }).toEqual({
      n: 50,
      first: 1,
      top: 50,
      complete: false,
      walked: 0
    })
    db.close()
  })

  test('a sparse tree under a huge head is walked in passes that follow the seqs found: every file once, two gaps', async () => {
    const p = await forger()
    const seqs = [...Array.from({ length: 120 }, (_, i) => i + 1), ...Array.from({ length: 120 }, (_, i) => 1e9 + i)]
    const files = []
    for (const seq of seqs) files.push(await eventFile(p, seq))
    // max-files-per-walk 10: each pass keeps 50 seqs
    const v = await victim([p], { maxFilesPerWalk: 10 })
    const idle = waitFor(v.events, 'sync:idle', { signal: AbortSignal.timeout(60_000), filter: () => v.store.producers.get(p.id)?.processed_seq === 1e12 })
    await v.syncer.offerHead(await headOf(p, 1e12, await honestTree(p, files)))
    await idle
    expect(seqsOf(v.store, p.id)).toEqual(seqs)
    expect(v.store.gaps.list().map((g) => [g.from_seq, g.to_seq])).toEqual([
      [121, 1e9 - 1],
      [1e9 + 120, 1e12]
    ])
    expect(v.store.producers.get(p.id)?.last_error ?? null).toBeNull()
    await v.syncer.stop()
  })
})
