import { describe, expect, test } from 'bun:test'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { openDatabase } from '../src/runtime/sqlite.ts'
import { cairn, initDir, tempDir } from './helpers/process.ts'

/** @returns the columns of blocks.db's table: `cid, bytes` in the format before the integer key */
async function columns(path: string): Promise<string[]> {
  const db = await openDatabase(path, { readonly: true })
  try {
    return db.all<{ name: string }>('PRAGMA table_info(blocks)').map((c) => c.name)
  } finally {
    db.close()
  }
}

describe('cairn export beside a node writing blocks.db', () => {
  test('opens the file while the node is in a write transaction (a commit, a catch-up batch, a collection)', async () => {
    using tmp = tempDir()
    const dir = await initDir(tmp.path, 'a')
    const node = await openDatabase(join(dir, 'blocks.db'))
    try {
      node.exec('BEGIN IMMEDIATE')
      const r = await cairn(['export', '--data', dir, '--car', join(tmp.path, 'a.car')], { runtime: 'bun' })
      node.exec('ROLLBACK')
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' })
    } finally {
      node.close()
    }
  }, 60_000)
})

describe('cairn export on a blocks.db of the format before the integer key', () => {
  test('reads it as it is, beside a node that holds it (converting it at its first start, or an older build running)', async () => {
    using tmp = tempDir()
    const dir = await initDir(tmp.path, 'a')
    const path = join(dir, 'blocks.db')
    for (const suffix of ['', '-wal', '-shm']) rmSync(path + suffix, { force: true })
    const legacy = await openDatabase(path)
    legacy.exec('PRAGMA auto_vacuum = INCREMENTAL; PRAGMA journal_mode = WAL; CREATE TABLE blocks (cid TEXT PRIMARY KEY, bytes BLOB NOT NULL)')
    try {
      // The node's write transaction, as its conversion holds it for as long as the copy takes.
      legacy.exec('BEGIN IMMEDIATE')
      const during = await cairn(['export', '--data', dir, '--car', join(tmp.path, 'during.car')], { runtime: 'bun' })
      legacy.exec('ROLLBACK')
      expect({ code: during.code, stderr: during.stderr }).toEqual({ code: 0, stderr: '' })
      // An older build's node reads and writes the table by the CID's string: an export converts nothing under it.
      const after = await cairn(['export', '--data', dir, '--car', join(tmp.path, 'after.car')], { runtime: 'bun' })
      expect({ code: after.code, stderr: after.stderr }).toEqual({ code: 0, stderr: '' })
      expect(await columns(path)).toEqual(['cid', 'bytes'])
    } finally {
      legacy.close()
    }
  }, 60_000)
})
