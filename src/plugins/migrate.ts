import { createHash } from 'node:crypto'
import type { PluginStateTable } from '../store/pluginState.ts'
import { PluginLoadError } from '../errors.ts'
import { MIGRATIONS } from '../store/migrations.ts'
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
    try {
      migrateOne(state, plugin, source)
    } catch (err) {
      throw withOwner(err, state, plugin, plugins)
    }
    state.ensureCursor(plugin.name)
    for (const [type, handler] of Object.entries(plugin.handles)) state.requeueHeld(plugin.name, type, handler.version, Date.now())
  }
}

/**
 * @returns the digest a plugin migration's text is recorded by: the SHA-256, in hex, of its text with line ends
 * made LF and the spaces and tabs ending each line dropped (a checkout with CRLF, an editor trimming lines, leave
 * the SQL what it was)
 */
function migrationDigest(sql: string): string {
  return createHash('sha256')
    .update(
      sql
        .replace(/\r\n?/g, '\n')
        .replace(/[ \t]+$/gm, '')
        .trim()
    )
    .digest('hex')
}

/** SQLite's refusal of a CREATE whose name is taken; the name as written in the statement (quoted or not). */
const TAKEN = /\b(table|view) (?:"((?:[^"]|"")+)"|`((?:[^`]|``)+)`|\[([^\]]+)\]|(\S+)) already exists/

/**
 * @returns `err` with who may own the name a failed CREATE found taken: plugin tables share cairn.db's one namespace,
 * and cairn records no owner of a table, only which plugins ran (their cursors). So it names another loaded plugin
 * whose migrations create that name, else the plugins that ran on this node and are not loaded now: a plugin removed
 * from --plugins (or renamed) leaves its tables behind.
 */
function withOwner(err: unknown, state: PluginStateTable, plugin: Plugin, loaded: readonly LoadedPlugin[]): unknown {
  const m = (err as Error).message.match(TAKEN)
  if (!(err instanceof PluginLoadError) || m == null) return err
  const name = m[2]?.replaceAll('""', '"') ?? m[3]?.replaceAll('``', '`') ?? m[4] ?? m[5]
  const lower = name.toLowerCase()
  const creates = (p: Plugin): boolean => [...tablesOf(p), ...viewsOf(p)].some((t) => t.toLowerCase() === lower)
  if (tablesCreatedBy(MIGRATIONS).some((t) => t.toLowerCase() === lower)) return new PluginLoadError(`${err.message}: ${name} is one of cairn's own tables; the plugin must use another name`)
  const other = loaded.find((l) => l.plugin.name !== plugin.name && creates(l.plugin))
  if (other != null) {
    return new PluginLoadError(`${err.message}: plugin "${other.plugin.name}" (${other.source}), also loaded, creates ${name} too; plugins share cairn.db's names, so one of them must use another`)
  }
  const names = new Set(loaded.map((l) => l.plugin.name))
  const gone = state.knownPlugins().filter((p) => !names.has(p))
  if (gone.length === 0) return err
  return new PluginLoadError(
    `${err.message}: no other loaded plugin creates ${name}, but cairn.db keeps the tables of plugins that ran on this node and are not loaded now (${gone.join(', ')}), and it may be one of theirs (a plugin renamed keeps its old name's tables). See docs/plugins.md, "Removing or renaming a plugin"`
  )
}

/**
 * Runs a plugin's migrations that have not run, each in its own transaction (a savepoint inside another), after
 * checking those that ran: each must still have the text it ran with (a node whose migration 1 was edited would
 * keep its old tables while a rebuild, or a node starting afresh, made the edited ones), and the plugin must
 * have at least as many (fewer is an older release, whose handlers do not know the newer tables).
 *
 * @throws PluginLoadError naming the plugin, its file and the failing, edited or missing migration
 */
export function migrateOne(state: PluginStateTable, plugin: Plugin, source: string): void {
  const done = state.migrationVersion(plugin.name)
  const migrations = plugin.migrations ?? []
  const refused = `Cannot start plugin "${plugin.name}" from ${source}`
  if (migrations.length < done) {
    throw new PluginLoadError(
      `${refused}: it has ${migrations.length} migration(s), and this node applied ${done} of the plugin's (a newer release of it ran here, and its tables are that release's): run that release or a newer one`
    )
  }
  const digests = state.migrationDigests(plugin.name)
  for (const [version, digest] of digests) {
    if (digest != null && digest !== migrationDigest(migrations[version - 1])) {
      throw new PluginLoadError(
        `${refused}: its migration ${version} is not the text this node applied (a released migration was edited; the tables it made here are the old text's; line ends and spaces ending a line do not count): restore that migration's text, and put the change in a new migration after the last`
      )
    }
  }
  // A migration that ran before cairn recorded digests gets the digest of its text now, the only text there
  // is: an edit made before this start goes unseen, one made after it is refused.
  for (const [version, digest] of digests) if (digest == null) state.recordMigrationDigest(plugin.name, version, migrationDigest(migrations[version - 1]))
  for (let i = done; i < migrations.length; i++) {
    try {
      state.migrate(plugin.name, i + 1, migrations[i], migrationDigest(migrations[i]), Date.now())
    } catch (err) {
      throw new PluginLoadError(`${refused}: migration ${i + 1} failed: ${(err as Error).message}`)
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
  return tablesCreatedBy(plugin.migrations ?? [])
}

/** @returns the table names these statements create */
function tablesCreatedBy(statements: readonly string[]): string[] {
  const names = new Set<string>()
  for (const sql of statements) {
    for (const m of sql.matchAll(new RegExp(`CREATE\\s+(?:VIRTUAL\\s+)?TABLE\\s+(?:IF\\s+NOT\\s+EXISTS\\s+)?${NAME}`, 'gi'))) names.add(objectName(m))
  }
  return [...names]
}
