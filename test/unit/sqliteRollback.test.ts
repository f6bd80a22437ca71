import { expect, test } from 'bun:test'
import { openDatabase } from '../../src/runtime/sqlite.ts'

test('once SQLite rolls back the whole transaction inside a savepoint, nothing more in it is written or committed on its own', async () => {
  const db = await openDatabase(':memory:')
  db.exec('CREATE TABLE t (n INTEGER PRIMARY KEY ON CONFLICT ROLLBACK); CREATE TABLE log (x TEXT)')
  db.run('INSERT INTO t (n) VALUES (1)')
  const seen: string[] = []
  expect(() =>
    db.transaction(() => {
      db.run("INSERT INTO log (x) VALUES ('before')")
      try {
        db.transaction(() => db.run('INSERT INTO t (n) VALUES (1)'))
      } catch (err) {
        seen.push((err as Error).message)
      }
      // What the caller does next (record the failure, go on with the next event) must not commit alone.
      for (const write of [() => db.transaction(() => db.run("INSERT INTO log (x) VALUES ('savepoint after')")), () => db.run("INSERT INTO log (x) VALUES ('after')")]) {
        try {
          write()
        } catch (err) {
          seen.push((err as Error).name)
        }
      }
    })
  ).toThrow()
  expect(seen).toEqual(['UNIQUE constraint failed: t.n', 'TransactionRolledBackError', 'TransactionRolledBackError'])
  expect(db.all('SELECT x FROM log')).toEqual([])
  // The connection is usable again once the transaction unwound.
  db.transaction(() => db.run("INSERT INTO log (x) VALUES ('next')"))
  expect(db.all('SELECT x FROM log')).toEqual([{ x: 'next' }])
  db.close()
})
