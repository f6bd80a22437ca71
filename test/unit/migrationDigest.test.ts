import { expect, test } from 'bun:test'
import { migratePlugins } from '../../src/plugins/migrate.ts'
import { definePlugin, v } from '../../src/plugins/mod.ts'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { Store } from '../../src/store/store.ts'

const notes = (sql: string) => [{ plugin: definePlugin({ name: 'notes', handles: { 't.x': { version: 1, payload: v.unknown() } }, migrations: [sql], apply() {} }), source: 'notes.ts' }]

// A migration's text is checked against the digest recorded when it ran; a checkout with CRLF line ends (SQL read
// from a .sql file on Windows) or an editor trimming the spaces that end lines leaves the SQL the same.
test("a migration's line ends and the spaces ending its lines do not count as an edit; its words do", async () => {
  const db = await openDatabase(':memory:')
  migrate(db)
  const store = new Store(db)
  const lf = 'CREATE TABLE notes (\n  id TEXT PRIMARY KEY, \n  body TEXT\n)\n'
  migratePlugins(store.pluginState, notes(lf))
  const refusal = (sql: string): string | undefined => {
    try {
      migratePlugins(store.pluginState, notes(sql))
    } catch (err) {
      return (err as Error).message
    }
    return undefined
  }
  expect(refusal(lf.replaceAll('\n', '\r\n'))).toBeUndefined()
  expect(refusal(lf.replaceAll(' \n', '\n'))).toBeUndefined()
  expect(refusal(lf.trim())).toBeUndefined()
  expect(refusal(lf.replace('body TEXT', 'body BLOB'))).toMatch(/its migration 1 is not the text this node applied/)
})
