/**
 * What one garbage collection costs over a blocks.db of LIVE reachable and DEAD unreachable blocks: a
 * directory of LIVE event files (in sub-directories of 200) that a producer's head points at, and DEAD
 * files nothing reaches, each in its own commit of 1,000. The collection runs without rests (one stretch
 * per pause) so that its wall time is its cost; CPU and wall time of the run, then of a second run
 * that finds nothing to delete.
 *
 *   bun bench/gc.ts                    # LIVE=20000 DEAD=60000
 *   LIVE=100000 DEAD=200000 bun bench/gc.ts
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { collectGarbage } from '../src/housekeeping/gc.ts'
import { openDatabase } from '../src/runtime/sqlite.ts'
import { openBlockDatabase, SqliteBlockstore } from '../src/store/blockstore.ts'
import { migrate } from '../src/store/migrations.ts'
import { Store } from '../src/store/store.ts'
import { type Block, directoryBlock, fileBlockSync } from '../src/unixfs/tree.ts'

const LIVE = Number(process.env.LIVE ?? 20_000)
const DEAD = Number(process.env.DEAD ?? 60_000)

const dir = mkdtempSync(join(tmpdir(), 'cairn-bench-gc-'))
try {
  const db = await openDatabase(':memory:')
  migrate(db)
  const store = new Store(db)
  const blocks = new SqliteBlockstore(await openBlockDatabase(join(dir, 'blocks.db')))
  const file = (tag: string, i: number): Block => fileBlockSync(new TextEncoder().encode(`{"tag":"${tag}","i":${i},"pad":"${'x'.repeat(300)}"}`))
  const put = (bs: Block[]): void => {
    for (let i = 0; i < bs.length; i += 1000) blocks.putAll(bs.slice(i, i + 1000))
  }
  // Dead blocks first and live after, interleaved by commit, as replaced shards and kept files are.
  const subdirs: Array<{ name: string; cid: Block['cid']; size: number }> = []
  for (let d = 0; d * 200 < Math.max(LIVE, DEAD); d++) {
    const dead = Array.from({ length: Math.max(0, Math.min(200, DEAD - d * 200)) }, (_, i) => file('dead', d * 200 + i))
    const live = Array.from({ length: Math.max(0, Math.min(200, LIVE - d * 200)) }, (_, i) => file('live', d * 200 + i))
    put(dead)
    if (live.length === 0) continue
    const sub = await directoryBlock(live.map((f, i) => ({ name: `${i}.json`, cid: f.cid, size: f.bytes.length })))
    put([...live, sub])
    subdirs.push({ name: `d${d}`, cid: sub.cid, size: sub.bytes.length })
  }
  const root = await directoryBlock(subdirs)
  put([root])
  store.producers.putHead({ producer: 'p', seq: 1, root: root.cid.toString(), hlc: '1', acks: {}, signed: new Uint8Array([1]), receivedAt: Date.now() })
  blocks.truncateWal()
  const stored = blocks.count()
  for (const run of ['first', 'again']) {
    const cpu = process.cpuUsage()
    const t0 = performance.now()
    const r = await collectGarbage(store, blocks, { exclusive: async (fn) => fn(), sliceMs: 1e9, restRatio: 0 })
    const used = process.cpuUsage(cpu)
    console.log(
      `${run}: ${stored} blocks, ${r.blocks} deleted: ${Math.round(performance.now() - t0)} ms wall, ${Math.round((used.user + used.system) / 1000)} ms CPU (${Math.round(used.system / 1000)} ms system)`
    )
  }
  blocks.db.close()
} finally {
  rmSync(dir, { recursive: true, force: true })
}
