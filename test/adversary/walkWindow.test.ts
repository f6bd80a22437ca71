import { describe, expect, test } from 'bun:test'
import { heapStats } from 'bun:jsc'
import { waitFor } from '../../src/node/events.ts'
import { RemoteDirsTable } from '../../src/store/remoteDirs.ts'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { listChanges } from '../../src/sync/listing.ts'
import { SeqWindow, WalkBudget } from '../../src/sync/plan.ts'
import { silentLog } from '../../src/log/logger.ts'
import { eventFile, forger, headOf, honestTree, seqsOf, victim } from './walkForge.ts'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import * as raw from 'multiformats/codecs/raw'

const cid = CID.create(1, raw.code, await sha256.digest(new Uint8Array([1])))
const ID = '01890a5d-ac96-774b-bcce-b302099a8057'
const keep = (w: SeqWindow, seqs: number[], oversized = false) => {
  for (const seq of seqs) w.keep('2024-01-01/00', seq, ID, cid.bytes, 100, oversized)
}
const rowSeqs = (files: { length: number; seq(i: number): number }) => Array.from({ length: files.length }, (_, i) => files.seq(i))

describe('a walk holds a bounded window of seqs', () => {
  test('SeqWindow keeps the lowest seqs in at most twice its size, and still refuses a seq found twice', () => {
    const w = new SeqWindow(10)
    let most = 0
    // 1,000 seqs in a shuffled order, offered one directory of 7 at a time
    const seqs = Array.from({ length: 1000 }, (_, i) => ((i * 389) % 1000) + 1)
    for (let i = 0; i < seqs.length; i += 7) {
      keep(w, seqs.slice(i, i + 7))
      most = Math.max(most, w.held)
    }
    const pass = w.finish(5000)
    expect({ seqs: rowSeqs(pass.files), top: pass.top, complete: pass.complete }).toEqual({ seqs: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], top: 10, complete: false })
    expect(most).toBeLessThan(20)

    const dup = new SeqWindow(3)
    keep(dup, [5, 6, 7, 8, 9])
    expect(() => keep(dup, [7])).toThrow('seq 7 is in the tree twice')
    const all = new SeqWindow(10)
    keep(all, [3, 1, 2])
    keep(all, [4], true)
    const p = all.finish(9)
    expect({ seqs: rowSeqs(p.files), oversized: rowSeqs(p.files).filter((_, i) => p.files.oversized(i)), top: p.top, complete: p.complete }).toEqual({
      seqs: [1, 2, 3, 4],
      oversized: [4],
      top: 9,
      complete: true
    })
  })

  test('a pass holds its planned files in a few typed arrays, not in objects per file', () => {
    const n = 50_000
    Bun.gc(true)
    const before = heapStats().objectCount
    const w = new SeqWindow(n, 1000)
    // in a shuffled order, as a HAMT gives them; every tenth refused as oversized
    for (let i = 0; i < n; i++) {
      const seq = ((i * 7919) % n) + 1
      w.keep('2024-01-01/00', seq, ID, cid.bytes, seq % 10 === 0 ? 5000 : 100, seq % 10 === 0)
    }
    const pass = w.finish(n)
    Bun.gc(true)
    const held = heapStats().objectCount - before
    expect({ rows: pass.files.length, first: pass.files.path(0), tenth: pass.files.refusal(9).seq, last: pass.files.seq(n - 1), cid: pass.files.cid(n - 1).toString() }).toEqual({
      rows: n,
      first: `2024-01-01/00/000000000001-${ID}.json`,
      tenth: 10,
      last: n,
      cid: cid.toString()
    })
    expect(held).toBeLessThan(1000)
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
    expect({ n: listing.files.length, first: listing.files.seq(0), top: listing.top, complete: listing.complete, walked: listing.walked.size }).toEqual({
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
