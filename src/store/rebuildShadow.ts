import { closeSync, openSync, readdirSync, rmSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { BUSY_TIMEOUT_MS, openDatabaseSync, type SqlDatabase } from '../runtime/sqlite.ts'
import { IDENT, quoteIdent } from './identifiers.ts'
import { Store } from './store.ts'

/**
 * The plugin-state tables the runner reads and writes while it applies events (`processPlugin`, `applyOne`,
 * `pluginState`, `stateKeys`, `snapshots.loaded`): a rebuild's shadow has empty copies of them in its own main
 * schema, so that unqualified names resolve to them and not to cairn.db's.
 */
const STATE_TABLES = ['plugin_migrations', 'plugin_cursors', 'plugin_applied', 'plugin_failures', 'dead_letters', 'plugin_held', 'state_keys', 'snapshots_loaded']

/** The per-(plugin, event) tables whose rows a swap replaces with the shadow's (few: those that wait for something). */
const WAITING = ['plugin_failures', 'dead_letters', 'plugin_held']

/** The schema a swap attaches the shadow under, on cairn.db's connection. */
const SHADOW = 'rebuild'

/** @returns the shadow file of a plugin's rebuild, beside cairn.db */
export function shadowPath(livePath: string, plugin: string): string {
  return join(dirname(livePath), `rebuild-${plugin}.db`)
}

/** Removes a shadow file and the journals SQLite may have left beside it. */
function removeShadow(path: string): void {
  for (const suffix of ['', '-journal', '-wal', '-shm']) rmSync(`${path}${suffix}`, { force: true })
}

/**
 * Removes the shadows of rebuilds a crash or a kill left in cairn.db's directory (their requests stay: the
 * rebuild runs again).
 *
 * @returns the files removed
 */
export function removeLeftoverShadows(livePath: string): string[] {
  const dir = dirname(livePath)
  const left = readdirSync(dir).filter((f) => /^rebuild-[a-z0-9][a-z0-9._-]{0,63}\.db(-journal|-wal|-shm)?$/.test(f))
  for (const f of left) rmSync(join(dir, f), { force: true })
  return left
}

/** @returns `path` as an SQLite URI opening it read-only */
function readOnlyUri(path: string): string {
  return `file:${path.replaceAll('%', '%25').replaceAll('?', '%3f').replaceAll('#', '%23')}?mode=ro`
}

/**
 * A rebuild's shadow database: a file of its own (`rebuild-<plugin>.db`) whose connection has cairn.db attached
 * read-only. The plugin's migrations and the runner's bookkeeping land in the shadow's main schema; `events` and
 * every other table of cairn.db are read through the attachment, so a slice of the rebuild holds the shadow's
 * write lock and a read snapshot of cairn.db, never cairn.db's write lock.
 */
export class RebuildShadow {
  readonly path: string
  readonly store: Store
  private readonly db: SqlDatabase

  private constructor(path: string, db: SqlDatabase) {
    this.path = path
    this.db = db
    this.store = new Store(db)
  }

  /**
   * Creates the shadow of a plugin's rebuild (replacing a leftover one) with empty copies of the plugin-state
   * tables, cairn.db's schema for them, and the plugin's cursor at 0.
   *
   * @throws Error from SQLite (the disk is full, the directory is not writable)
   */
  static create(live: Store, plugin: string): RebuildShadow {
    const path = shadowPath(live.db.path, plugin)
    removeShadow(path)
    // Like every file of the data directory, it is the user's alone (0600): it holds a copy of the plugin's rows.
    // SQLite would create it with the umask's mode; it opens the empty file as an empty database.
    closeSync(openSync(path, 'wx', 0o600))
    const db = openDatabaseSync(path, { uri: true })
    try {
      // A crash leaves the shadow to be removed at the next start: it needs no durability, only savepoints.
      db.exec(`PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`)
      db.run('ATTACH ? AS live', [readOnlyUri(live.db.path)])
      db.transaction(() => {
        for (const table of STATE_TABLES) {
          const objects = db.all<{ type: string; sql: string }>("SELECT type, sql FROM live.sqlite_master WHERE tbl_name = ? AND type IN ('table', 'index') AND sql IS NOT NULL ORDER BY type DESC", [
            table
          ])
          for (const o of objects) db.exec(o.sql)
        }
        db.run('INSERT INTO plugin_cursors (plugin, cursor) VALUES (?, 0)', [plugin])
      })
    } catch (err) {
      db.close()
      removeShadow(path)
      throw err
    }
    return new RebuildShadow(path, db)
  }

  /** @returns whether the plugin's walk in the shadow has passed the last row of cairn.db's events (as this connection sees it now) */
  atTop(plugin: string): boolean {
    return this.store.pluginState.cursor(plugin) >= this.store.events.maxCursor()
  }

  /** Closes the shadow's connection and removes its file. */
  remove(): void {
    try {
      this.db.close()
    } finally {
      removeShadow(this.path)
    }
  }
}

/**
 * The statements of a swap, on cairn.db's connection with a shadow attached (`attach`, then `detach` after
 * the transaction: SQLite attaches outside transactions only).
 */
export class RebuildSwap {
  private readonly db: SqlDatabase

  constructor(db: SqlDatabase) {
    this.db = db
  }

  /**
   * Attaches a shadow as `rebuild`, first detaching one an earlier swap failed to detach (which would make every
   * later swap fail). Call it outside any transaction.
   */
  attach(path: string): void {
    this.detach()
    this.db.exec(`ATTACH '${path.replaceAll("'", "''")}' AS ${SHADOW}`)
  }

  /** Detaches the shadow, if attached. */
  detach(): void {
    if (this.db.get('SELECT 1 AS x FROM pragma_database_list WHERE name = ?', [SHADOW]) != null) this.db.exec(`DETACH ${SHADOW}`)
  }

  /** Foreign keys between the plugin's tables are checked at the commit, not while its tables are copied one by one. */
  deferForeignKeys(): void {
    this.db.exec('PRAGMA defer_foreign_keys = ON')
  }

  /** @returns the tables the plugin's migrations created in the shadow (its bookkeeping excluded) */
  shadowTables(): string[] {
    // A virtual table's own tables (FTS5's docs_data, docs_idx, …: type 'shadow') are its to fill: it is copied through itself.
    return this.db
      .all<{ name: string }>(`SELECT name FROM pragma_table_list WHERE schema = ? AND type IN ('table', 'virtual') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name`, [SHADOW])
      .map((r) => r.name)
      .filter((name) => !STATE_TABLES.includes(name))
  }

  /**
   * Drops the triggers on `tables` (in cairn.db), so that copying rows fires none of them.
   *
   * @returns their SQL, to create them again after the copy
   */
  dropTriggers(tables: readonly string[]): string[] {
    const triggers = this.db.all<{ name: string; sql: string }>(
      `SELECT name, sql FROM main.sqlite_master WHERE type = 'trigger' AND tbl_name IN (${tables.map(() => '?').join(', ')}) AND sql IS NOT NULL`,
      tables
    )
    for (const t of triggers) this.db.exec(`DROP TRIGGER main.${quoteIdent(t.name)}`)
    return triggers.map((t) => t.sql)
  }

  /** Creates triggers again from their SQL. */
  createTriggers(sql: readonly string[]): void {
    for (const s of sql) this.db.exec(s)
  }

  /**
   * Replaces the rows of a plugin table in cairn.db (as its migrations left them: seed rows) with the shadow's,
   * each with its rowid (a table without an INTEGER PRIMARY KEY knows its rows by it, gaps of deleted rows
   * included), and its AUTOINCREMENT counter with the shadow's.
   */
  copyTable(table: string): void {
    if (!IDENT.test(table)) throw new TypeError(`not a table name: ${table}`)
    const names = this.db.all<{ name: string }>(`SELECT name FROM pragma_table_info(?, '${SHADOW}') ORDER BY cid`, [table]).map((c) => c.name)
    const kind = this.db.get<{ type: string; wr: number }>('SELECT type, wr FROM pragma_table_list WHERE schema = ? AND name = ?', [SHADOW, table])
    // The rowid by a name no column took (a WITHOUT ROWID table has none; a virtual one, such as FTS5, takes it).
    const lower = new Set(names.map((n) => n.toLowerCase()))
    const rowid = (kind?.type === 'table' && kind.wr === 0) || kind?.type === 'virtual' ? ['rowid', '_rowid_', 'oid'].find((n) => !lower.has(n)) : undefined
    const columns = [...(rowid == null ? [] : [rowid]), ...names.map(quoteIdent)].join(', ')
    this.db.exec(`DELETE FROM main.${quoteIdent(table)}`)
    this.db.exec(`INSERT INTO main.${quoteIdent(table)} (${columns}) SELECT ${columns} FROM ${SHADOW}.${quoteIdent(table)}`)
    const sequences = this.db.get(`SELECT 1 AS x FROM ${SHADOW}.sqlite_master WHERE name = 'sqlite_sequence'`) != null
    if (sequences) {
      this.db.run(
        `UPDATE main.sqlite_sequence SET seq = (SELECT s.seq FROM ${SHADOW}.sqlite_sequence s WHERE s.name = ?) WHERE name = ? AND EXISTS (SELECT 1 FROM ${SHADOW}.sqlite_sequence s WHERE s.name = ?)`,
        [table, table, table]
      )
    }
  }

  /**
   * Makes a plugin's applied marks, retries, dead letters, holds, cursor and state keys in cairn.db the shadow's.
   * The marks and keys of the old tables are mostly the new ones: only the difference is written (an applied
   * mark's time is then the first application's), so the swap writes little beyond the plugin's own tables.
   * State keys of events no longer held stay, as ever (stateKeys.forgetPlugin).
   *
   * @returns the cursor the plugin's walk reached in the shadow
   */
  copyState(plugin: string): number {
    this.db.run(
      `DELETE FROM main.plugin_applied WHERE plugin = ?
         AND NOT EXISTS (SELECT 1 FROM ${SHADOW}.plugin_applied n WHERE n.plugin = plugin_applied.plugin AND n.producer = plugin_applied.producer AND n.event_id = plugin_applied.event_id)`,
      [plugin]
    )
    this.db.run(`INSERT OR IGNORE INTO main.plugin_applied SELECT * FROM ${SHADOW}.plugin_applied WHERE plugin = ?`, [plugin])
    for (const table of WAITING) {
      this.db.run(`DELETE FROM main.${table} WHERE plugin = ?`, [plugin])
      this.db.run(`INSERT INTO main.${table} SELECT * FROM ${SHADOW}.${table} WHERE plugin = ?`, [plugin])
    }
    this.db.run(
      // Most rows are in the shadow too: that is asked first, and the events table only for the others.
      `DELETE FROM main.state_keys WHERE plugin = ?
         AND NOT EXISTS (SELECT 1 FROM ${SHADOW}.state_keys n WHERE n.producer = state_keys.producer AND n.seq = state_keys.seq AND n.plugin = state_keys.plugin AND n.key = state_keys.key)
         AND EXISTS (SELECT 1 FROM main.events e WHERE e.producer = state_keys.producer AND e.seq = state_keys.seq)`,
      [plugin]
    )
    this.db.run(`INSERT OR IGNORE INTO main.state_keys SELECT * FROM ${SHADOW}.state_keys WHERE plugin = ?`, [plugin])
    const cursor = this.db.get<{ cursor: number }>(`SELECT cursor FROM ${SHADOW}.plugin_cursors WHERE plugin = ?`, [plugin])?.cursor ?? 0
    this.db.run('UPDATE main.plugin_cursors SET cursor = ? WHERE plugin = ?', [cursor, plugin])
    return cursor
  }

  /**
   * Remembers which events of `types` past `cursor` the plugin has applied in cairn.db before the swap replaces its
   * marks: their effects were queued by the old tables' walk (queueEffects passes them over).
   */
  rememberApplied(plugin: string, cursor: number, types: readonly string[]): void {
    this.db.exec('CREATE TEMP TABLE IF NOT EXISTS rebuild_applied_before (producer TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (producer, event_id)) WITHOUT ROWID')
    this.db.run('DELETE FROM temp.rebuild_applied_before')
    if (types.length === 0) return
    this.db.run(
      `INSERT OR IGNORE INTO temp.rebuild_applied_before (producer, event_id)
         SELECT e.producer, e.event_id FROM main.events e JOIN main.plugin_applied a ON a.plugin = ? AND a.producer = e.producer AND a.event_id = e.event_id
          WHERE e.type IN (${types.map(() => '?').join(', ')}) AND e.cursor > ?`,
      [plugin, ...types, cursor]
    )
  }

  /**
   * Queues the effects of the events of `types` past `cursor` that the plugin now has applied and had not before
   * the swap (rememberApplied): events that came during the rebuild which the old tables' walk had not reached, or
   * could not apply (the old tables lacked what the plugin writes now), so no effect of theirs was queued, and the
   * rebuild queues none.
   *
   * @returns how many were queued
   */
  queueEffects(plugin: string, cursor: number, types: readonly string[], at: number): number {
    if (types.length === 0) return 0
    const queued = this.db.run(
      `INSERT OR IGNORE INTO main.plugin_effects (plugin, producer, event_id, next_at)
         SELECT a.plugin, a.producer, a.event_id, ? FROM main.events e JOIN main.plugin_applied a ON a.plugin = ? AND a.producer = e.producer AND a.event_id = e.event_id
          WHERE e.type IN (${types.map(() => '?').join(', ')}) AND e.cursor > ?
            AND NOT EXISTS (SELECT 1 FROM temp.rebuild_applied_before b WHERE b.producer = e.producer AND b.event_id = e.event_id)`,
      [at, plugin, ...types, cursor]
    ).changes
    this.db.run('DELETE FROM temp.rebuild_applied_before')
    return queued
  }
}
