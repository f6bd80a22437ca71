/**
 * What the commit's syncs cost on this disk, without the rest of a node: two SQLite files in WAL mode
 * (`synchronous = NORMAL`), like blocks.db and cairn.db. Each round writes 5 blocks of 1.2 KiB to the
 * first (synced, unsynced with a passive checkpoint every 20 rounds as the node's once-a-second sync, or
 * not at all) and then one durable row to the second; 300 rounds 5 ms apart per mode, medians.
 *
 *   bun bench/fsync.ts            # DIR=/tmp by default: put it on the disk a node's data directory uses
 */
import { Database } from 'bun:sqlite'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const dir = mkdtempSync(join(process.env.DIR ?? tmpdir(), 'cairn-bench-fsync-'))
try {
  const blocks = new Database(join(dir, 'blocks.db'))
  const head = new Database(join(dir, 'cairn.db'))
  for (const d of [blocks, head]) d.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB)')
  const blob = (): Uint8Array => crypto.getRandomValues(new Uint8Array(1200))
  const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[xs.length >> 1]
  let key = 0
  for (const mode of ['blocks synced', 'blocks unsynced', 'no blocks', 'blocks synced', 'blocks unsynced', 'no blocks']) {
    const tb: number[] = []
    const th: number[] = []
    for (let i = 0; i < 300; i++) {
      const t0 = performance.now()
      if (mode !== 'no blocks') {
        if (mode === 'blocks synced') blocks.exec('PRAGMA synchronous = FULL')
        blocks.exec('BEGIN IMMEDIATE')
        for (let j = 0; j < 5; j++) blocks.query('INSERT INTO t VALUES (?, ?)').run(String(key++), blob())
        blocks.exec('COMMIT')
        if (mode === 'blocks synced') blocks.exec('PRAGMA synchronous = NORMAL')
      }
      const t1 = performance.now()
      head.exec('PRAGMA synchronous = FULL')
      head.exec('BEGIN IMMEDIATE')
      head.query('INSERT INTO t VALUES (?, ?)').run(String(key++), blob())
      head.exec('COMMIT')
      head.exec('PRAGMA synchronous = NORMAL')
      tb.push(t1 - t0)
      th.push(performance.now() - t1)
      if (i % 20 === 19 && mode === 'blocks unsynced') blocks.exec('PRAGMA wal_checkpoint(PASSIVE)')
      await Bun.sleep(5)
    }
    console.log(`${mode.padEnd(16)} blocks ${median(tb).toFixed(3)} ms, head ${median(th).toFixed(3)} ms, both ${(median(tb) + median(th)).toFixed(3)} ms`)
  }
  blocks.close()
  head.close()
} finally {
  rmSync(dir, { recursive: true, force: true })
}
