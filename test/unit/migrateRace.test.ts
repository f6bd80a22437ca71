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

  test('a migration that waits longer than its limit for another process holding the write lock says what it waited for', async () => {
    using tmp = tempDir()
    const path = join(tmp.path, 'cairn.db')
    const other = await openDatabase(path)
    migrate(other, MIGRATIONS.slice(0, -1))
    const waiter = await openDatabase(path)
    try {
      // The other process is in the middle of the last migration, for longer than this one waits.
      other.exec('BEGIN IMMEDIATE')
      other.exec(MIGRATIONS[MIGRATIONS.length - 1])
      const said: string[] = []
      let thrown: Error | undefined
      try {
        migrate(waiter, MIGRATIONS, undefined, { waitMs: 200, onWait: (line) => said.push(line) })
      } catch (err) {
        thrown = err as Error
      }
      expect({ name: thrown?.name, message: thrown?.message.replace(/for \d+ s/, 'for N s'), said }).toEqual({
        name: 'MigrationWaitError',
        message: `another process held its write lock for N s while its schema stayed at version ${MIGRATIONS.length - 1} of ${MIGRATIONS.length} (a migration under way, by a node starting or a cairn command on the same data directory, or a stuck writer): let that process finish, or stop it, then run this again`,
        said: [
          `${path} is at schema version ${MIGRATIONS.length - 1} of ${MIGRATIONS.length} and another process holds its write lock (a migration under way, or another long write): waiting up to 0 s for it to finish`
        ]
      })
      // Once the other process finished, the same call finds nothing to do; the busy timeout is back at 5 s.
      other.run('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)', [MIGRATIONS.length, Date.now()])
      other.exec('COMMIT')
      expect(migrate(waiter)).toBe(MIGRATIONS.length)
      expect(waiter.get<{ timeout: number }>('PRAGMA busy_timeout')?.timeout).toBe(5000)
    } finally {
      other.close()
      waiter.close()
    }
  })
})
