import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { openDatabase, type SqlDatabase } from '../../src/runtime/sqlite.ts'
import { MIGRATIONS, migrate } from '../../src/store/migrations.ts'
import { tempDir } from '../helpers/process.ts'

describe('migrations of one database by two processes at once', () => {
  test('a migration the other process applied after this one read the version is not run again (a verb migrating while the node starts)', async () => {
    using tmp = tempDir()
    const path = join(tmp.path, 'cairn.db')
    const older = await openDatabase(path)
    migrate(older, MIGRATIONS.slice(0, -1))
    older.close()
    const a = await openDatabase(path)
    const b = await openDatabase(path)
    try {
      // The other connection migrates right after this one read the schema version, before its first migration.
      let raced = false
      const racing = new Proxy(a, {
        get(target, key) {
          if (key === 'get') {
            return (sql: string, params?: unknown[]) => {
              const row = target.get(sql, params as never)
              if (!raced && sql.includes('max(version)')) {
                raced = true
                migrate(b)
              }
              return row
            }
          }
          const value = Reflect.get(target, key, target) as unknown
          return typeof value === 'function' ? value.bind(target) : value
        }
      }) as SqlDatabase
      expect(migrate(racing)).toBe(MIGRATIONS.length)
      expect(raced).toBe(true)
      expect(a.get<{ n: number }>('SELECT count(*) AS n FROM schema_migrations')?.n).toBe(MIGRATIONS.length)
    } finally {
      a.close()
      b.close()
    }
  })
})
