import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { openDatabaseSync } from '../../src/runtime/sqlite.ts'
import { RebuildSwap } from '../../src/store/rebuildShadow.ts'
import { tempDir } from '../helpers/process.ts'

describe('RebuildSwap', () => {
  test('attaching a shadow detaches one an earlier swap left attached, so that a failed detach does not fail every later swap', () => {
    using tmp = tempDir()
    const db = openDatabaseSync(join(tmp.path, 'cairn.db'))
    try {
      const swap = new RebuildSwap(db)
      swap.attach(join(tmp.path, 'rebuild-a.db'))
      // as a swap whose detach threw leaves it
      swap.attach(join(tmp.path, 'rebuild-b.db'))
      const attached = db.all<{ name: string; file: string }>("SELECT name, file FROM pragma_database_list WHERE name = 'rebuild'")
      expect(attached.map((a) => a.file)).toEqual([join(tmp.path, 'rebuild-b.db')])
      swap.detach()
      expect(db.all("SELECT name FROM pragma_database_list WHERE name = 'rebuild'")).toEqual([])
    } finally {
      db.close()
    }
  })
})
