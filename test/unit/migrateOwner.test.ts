import { expect, test } from 'bun:test'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { Store } from '../../src/store/store.ts'
import { migratePlugins } from '../../src/plugins/migrate.ts'
import { definePlugin, v } from '../../src/plugins/mod.ts'

const withTable = (name: string, table: string) =>
  definePlugin({ name, handles: { 't.x': { version: 1, payload: v.unknown() } }, migrations: [`CREATE TABLE ${table} (id TEXT PRIMARY KEY)`], apply() {} })

/** @returns the message migratePlugins throws with, or undefined */
function failure(fn: () => void): string | undefined {
  try {
    fn()
  } catch (err) {
    return (err as Error).message
  }
  return undefined
}

test('a migration that finds its table taken says whose it may be: a plugin that ran here and is no longer loaded, another loaded plugin, or cairn', async () => {
  const db = await openDatabase(':memory:')
  migrate(db)
  const store = new Store(db)
  migratePlugins(store.pluginState, [{ plugin: withTable('invoices', 'invoices'), source: 'invoices.ts' }])

  // Renamed: the old name's table stays, and the new name's first migration creates it again.
  expect(failure(() => migratePlugins(store.pluginState, [{ plugin: withTable('billing', 'invoices'), source: 'billing.ts' }]))).toBe(
    'Cannot start plugin "billing" from billing.ts: migration 1 failed: table invoices already exists: no other loaded plugin creates invoices, but cairn.db keeps the tables of plugins that ran on this node and are not loaded now (invoices), and it may be one of theirs (a plugin renamed keeps its old name\'s tables). See docs/plugins.md, "Removing or renaming a plugin"'
  )
  // Both loaded: the other one is named.
  expect(
    failure(() =>
      migratePlugins(store.pluginState, [
        { plugin: withTable('invoices', 'invoices'), source: 'invoices.ts' },
        { plugin: withTable('billing', 'invoices'), source: 'billing.ts' }
      ])
    )
  ).toBe(
    'Cannot start plugin "billing" from billing.ts: migration 1 failed: table invoices already exists: plugin "invoices" (invoices.ts), also loaded, creates invoices too; plugins share cairn.db\'s names, so one of them must use another'
  )
  expect(failure(() => migratePlugins(store.pluginState, [{ plugin: withTable('mine', 'events'), source: 'mine.ts' }]))).toBe(
    'Cannot start plugin "mine" from mine.ts: migration 1 failed: table events already exists: events is one of cairn\'s own tables; the plugin must use another name'
  )
})
