/**
 * What one SQL statement costs under Bun, through cairn's SqlDatabase (src/runtime/sqlite.ts, which prepares
 * each SQL text once and keeps it) against bun:sqlite directly: a cached read, a read prepared every time,
 * and a one-row write transaction whose BEGIN/COMMIT go through exec (prepared each time) or are kept.
 *
 *   bun bench/sqlite-statements.ts          # N=20000 of each, three rounds, µs per operation
 */
import { Database } from 'bun:sqlite'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openDatabase } from '../src/runtime/sqlite.ts'

const N = Number(process.env.N ?? 20_000)
const dir = mkdtempSync(join(tmpdir(), 'cairn-bench-sql-'))
try {
  const setup = 'PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)'
  const raw = new Database(join(dir, 'raw.db'), { create: true })
  raw.exec(setup)
  const ours = await openDatabase(join(dir, 'ours.db'))
  ours.exec(setup)
  const sql = 'SELECT k, v FROM t WHERE k = ?'
  const insert = 'INSERT OR REPLACE INTO t (k, v) VALUES (?, ?)'
  const rawGet = raw.prepare(sql)
  const rawInsert = raw.prepare(insert)
  const begin = raw.prepare('BEGIN IMMEDIATE')
  const commit = raw.prepare('COMMIT')
  const time = (label: string, fn: (i: number) => void): string => {
    const t0 = Bun.nanoseconds()
    for (let i = 0; i < N; i++) fn(i)
    return `${label} ${((Bun.nanoseconds() - t0) / N / 1000).toFixed(2)}`
  }
  for (let round = 1; round <= 3; round++) {
    const figures = [
      time('read, bun:sqlite prepared', (i) => rawGet.get(i % 100)),
      time('read, SqlDatabase.get (kept)', (i) => ours.get(sql, [i % 100])),
      time('read, prepared each time', (i) => raw.prepare(sql).get(i % 100)),
      time('transaction, BEGIN/COMMIT by exec', (i) => {
        raw.exec('BEGIN IMMEDIATE')
        rawInsert.run(i % 100, 'x')
        raw.exec('COMMIT')
      }),
      time('transaction, BEGIN/COMMIT kept', (i) => {
        begin.run()
        rawInsert.run(i % 100, 'x')
        commit.run()
      }),
      time('transaction, SqlDatabase.transaction', (i) => ours.transaction(() => ours.run(insert, [i % 100, 'x'])))
    ]
    console.log(`round ${round}, µs per operation: ${figures.join('; ')}`)
  }
  raw.close()
  ours.close()
} finally {
  rmSync(dir, { recursive: true, force: true })
}
