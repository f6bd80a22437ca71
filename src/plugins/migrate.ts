import type { PluginStateTable } from '../store/pluginState.ts'
import { PluginLoadError } from '../errors.ts'
import type { LoadedPlugin } from './types.ts'
import type { Plugin } from './types.ts'

/**
 * Prepares plugins to run: applies each one's migrations that have not run, each in its own transaction,
 * gives it a cursor (a new plugin backfills from the first row), and queues for replay the events held for
 * a version it now knows.
 *
 * @throws PluginLoadError naming the plugin, its file and the failing migration
 */
export function migratePlugins(state: PluginStateTable, plugins: readonly LoadedPlugin[]): void {
  for (const { plugin, source } of plugins) {
    migrateOne(state, plugin, source)
    state.ensureCursor(plugin.name)
    for (const [type, handler] of Object.entries(plugin.handles)) state.requeueHeld(plugin.name, type, handler.version, Date.now())
  }
}

/**
 * Runs a plugin's migrations that have not run, each in its own transaction (a savepoint inside another).
 *
 * @throws PluginLoadError naming the plugin, its file and the failing migration
 */
export function migrateOne(state: PluginStateTable, plugin: Plugin, source: string): void {
  const done = state.migrationVersion(plugin.name)
  const migrations = plugin.migrations ?? []
  for (let i = done; i < migrations.length; i++) {
    try {
      state.migrate(plugin.name, i + 1, migrations[i], Date.now())
    } catch (err) {
      throw new PluginLoadError(`Cannot start plugin "${plugin.name}" from ${source}: migration ${i + 1} failed: ${(err as Error).message}`)
    }
  }
}

/**
 * An object's name in a CREATE statement, after an optional `main.` (quoted or not): "quoted" (quotes doubled
 * inside), `quoted`, [quoted] or plain. Its groups are the name in each of those forms.
 */
const NAME = String.raw`(?:(?:main|"main"|\`main\`|\[main\])\s*\.\s*)?(?:"((?:[^"]|"")+)"|\`((?:[^\`]|\`\`)+)\`|\[([^\]]+)\]|([A-Za-z_][A-Za-z0-9_$]*))`

/** @returns the name a NAME match holds, unquoted */
function objectName(m: RegExpMatchArray): string {
  if (m[1] != null) return m[1].replaceAll('""', '"')
  if (m[2] != null) return m[2].replaceAll('``', '`')
  return m[3] ?? m[4]
}

/** @returns the views a plugin's migrations create */
export function viewsOf(plugin: Plugin): string[] {
  const names = new Set<string>()
  for (const sql of plugin.migrations ?? []) {
    for (const m of sql.matchAll(new RegExp(`CREATE\\s+(?:TEMP(?:ORARY)?\\s+)?VIEW\\s+(?:IF\\s+NOT\\s+EXISTS\\s+)?${NAME}`, 'gi'))) names.add(objectName(m))
  }
  return [...names]
}

/** @returns the table names a plugin's migrations create */
export function tablesOf(plugin: Plugin): string[] {
  const names = new Set<string>()
  for (const sql of plugin.migrations ?? []) {
    for (const m of sql.matchAll(new RegExp(`CREATE\\s+(?:VIRTUAL\\s+)?TABLE\\s+(?:IF\\s+NOT\\s+EXISTS\\s+)?${NAME}`, 'gi'))) names.add(objectName(m))
  }
  return [...names]
}
