import { describe, expect, test } from 'bun:test'
import { rmSync, writeFileSync } from 'node:fs'
import { openDataDirStore } from '../../src/datadir/load.ts'
import { dataPaths } from '../../src/datadir/layout.ts'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { MIGRATIONS, migrate } from '../../src/store/migrations.ts'
import { tempDir } from '../helpers/process.ts'

/** @returns the schema version recorded in the data directory's cairn.db */
async function schemaOf(dir: string): Promise<number> {
  const db = await openDatabase(dataPaths(dir).database)
  try {
    return db.get<{ v: number }>('SELECT max(version) AS v FROM schema_migrations')?.v ?? 0
  } finally {
    db.close()
  }
}

describe("a CLI verb opening a data directory's database", () => {
  test("leaves a running node's older schema alone, saying which cairn to use; migrates a stopped node's", async () => {
    using tmp = tempDir()
    const dir = tmp.path
    const p = dataPaths(dir)
    const older = await openDatabase(p.database)
    migrate(older, MIGRATIONS.slice(0, -1))
    older.close()
    // A live process holds the lock: this test's own, as a running node's would.
    writeFileSync(p.lock, `${process.pid}\n`)
    await expect(openDataDirStore(dir)).rejects.toThrow(
      `Cannot open ${p.database}: its schema version ${MIGRATIONS.length - 1} is older than this cairn's (${MIGRATIONS.length}), and the node running on ${dir} (pid ${process.pid}) is an older cairn: run this command with that node's cairn, or stop the node and start it with this one (the start migrates the database)`
    )
    expect(await schemaOf(dir)).toBe(MIGRATIONS.length - 1)
    rmSync(p.lock)
    const store = await openDataDirStore(dir)
    expect(store.schemaVersion()).toBe(MIGRATIONS.length)
    store.close()
  })
})
