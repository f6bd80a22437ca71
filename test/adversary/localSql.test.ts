import { describe, expect, test } from 'bun:test'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { initDataDir } from '../../src/datadir/init.ts'
import { cairn, tempDir } from '../helpers/process.ts'

describe('cairn sql', () => {
  test('refuses statements that touch files before they run: no file is created', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'n')
    await initDataDir(dir, { newNetwork: true })
    const target = join(tmp.path, 'copy.db')
    for (const sql of [
      `VACUUM INTO '${target}'`,
      `  /* hidden */ VACUUM INTO '${target}'`,
      `ATTACH DATABASE '${target}' AS x`,
      `SELECT 1; ATTACH DATABASE '${target}' AS x`,
      'VACUUM',
      'DETACH DATABASE main',
      "SELECT load_extension('/tmp/x.so')",
      'DELETE FROM events'
    ]) {
      const r = await cairn(['sql', '--data', dir, sql], { runtime: 'bun' })
      expect({ sql, code: r.code, refused: /Refused|SQL error/.test(r.stderr) }).toEqual({ sql, code: 1, refused: true })
      expect(existsSync(target)).toBe(false)
    }
    const ok = await cairn(['sql', '--data', dir, '--json', "SELECT count(*) AS n FROM events WHERE type = 'a;b'"], { runtime: 'bun' })
    expect(JSON.parse(ok.stdout)).toEqual([{ n: 0 }])
  })
})
