import { closeSync, openSync, readdirSync, rmSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { BUSY_TIMEOUT_MS, openDatabaseSync, type SqlDatabase } from '../runtime/sqlite.ts'
import { quoteIdent } from './identifiers.ts'
import { ftsTable, readOnlyVirtual } from './snapshots.ts'
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

/**
 * The shadow's own bookkeeping of the difference between its applied marks and state keys and cairn.db's, taken
 * in slices before the swap (RebuildShadow.differ), and of the events whose marks or keys the shadow changed after
 * its watch began (touched: their difference is taken again in the swap).
 */
const DIFF_TABLES = [
  'CREATE TABLE cairn_rebuild_marks_new (producer TEXT NOT NULL, event_id TEXT NOT NULL, applied_at INTEGER NOT NULL, PRIMARY KEY (producer, event_id)) WITHOUT ROWID',
  'CREATE TABLE cairn_rebuild_marks_gone (producer TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (producer, event_id)) WITHOUT ROWID',
  'CREATE TABLE cairn_rebuild_keys_new (producer TEXT NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL, order_key TEXT NOT NULL, PRIMARY KEY (producer, seq, key)) WITHOUT ROWID',
  'CREATE TABLE cairn_rebuild_keys_gone (producer TEXT NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL, PRIMARY KEY (producer, seq, key)) WITHOUT ROWID',
  'CREATE TABLE cairn_rebuild_touched_marks (producer TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (producer, event_id)) WITHOUT ROWID',
  'CREATE TABLE cairn_rebuild_touched_keys (producer TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (producer, seq)) WITHOUT ROWID'
]
const DIFF_TABLE_NAMES = DIFF_TABLES.map((sql) => sql.split(' ')[2])

/**
 * @returns the plugin's tables in a shadow's schema (`main` on its own connection, the attached name on cairn.db's),
 * its bookkeeping left out. A virtual table's own tables (FTS5's docs_data, docs_idx, …: type 'shadow') are its to
 * fill: it is copied through itself. A read-only view of another table's index (fts5vocab, fts4aux) holds no rows
 * of its own to copy: left out unless `readOnlyToo` (the tables to drop before the migrations run again).
 */
function pluginTables(db: SqlDatabase, schema: string, readOnlyToo = false): string[] {
  return db
    .all<{ name: string; sql: string | null }>(
      `SELECT l.name, m.sql FROM pragma_table_list l LEFT JOIN ${schema}.sqlite_master m ON m.name = l.name AND m.type = 'table'
        WHERE l.schema = ? AND l.type IN ('table', 'virtual') AND l.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY l.name`,
      [schema]
    )
    .filter((r) => !STATE_TABLES.includes(r.name) && !DIFF_TABLE_NAMES.includes(r.name) && (readOnlyToo || !readOnlyVirtual(r.sql)))
    .map((r) => r.name)
}

/** How many rows of each side one page of the difference reads at most (a few ms). */
const DIFF_PAGE = 1024

/**
 * The triggers that record, on one connection, the events whose applied marks or state keys change: into
 * `marks` (producer, event_id) and `keys` (producer, seq), for the plugins `when` accepts (an SQL condition on
 * the row, `$` standing for NEW or OLD). TEMP triggers: they live and die with the connection, and a TEMP
 * trigger's body resolves unqualified names from the temp schema first.
 */
function touchTriggers(prefix: string, marks: string, keys: string, when: string): string {
  const on = [
    ['plugin_applied', marks, 'event_id'],
    ['state_keys', keys, 'seq']
  ] as const
  return on
    .flatMap(([table, into, id]) => {
      const record = (row: 'NEW' | 'OLD'): string => {
        const cond = when.replaceAll('$', row)
        return `INSERT OR IGNORE INTO ${into} SELECT ${cond === '' ? '' : `${row}.plugin, `}${row}.producer, ${row}.${id}${cond === '' ? '' : ` WHERE ${cond}`};`
      }
      return [
        `CREATE TEMP TRIGGER IF NOT EXISTS ${prefix}_${table}_insert AFTER INSERT ON main.${table} BEGIN ${record('NEW')} END;`,
        `CREATE TEMP TRIGGER IF NOT EXISTS ${prefix}_${table}_delete AFTER DELETE ON main.${table} BEGIN ${record('OLD')} END;`,
        `CREATE TEMP TRIGGER IF NOT EXISTS ${prefix}_${table}_update AFTER UPDATE ON main.${table} BEGIN ${record('OLD')} ${record('NEW')} END;`
      ]
    })
    .join('\n')
}

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
  /** where the next page of the difference starts, per table (after this key), or 'done' */
  private readonly differed: { marks: readonly [string, string] | 'done'; keys: readonly [string, number] | 'done' } = {
    // Event ids are never empty and seqs start at 1: every row sorts after these (a mark kept from before producers were recorded has producer '').
    marks: ['', ''],
    keys: ['', 0]
  }

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
        for (const sql of DIFF_TABLES) db.exec(sql)
      })
    } catch (err) {
      db.close()
      removeShadow(path)
      throw err
    }
    return new RebuildShadow(path, db)
  }

  /** @returns the plugin's tables in the shadow now (after its migrations ran: those they made, read-only index views included) */
  tables(): string[] {
    return pluginTables(this.db, 'main', true)
  }

  /** @returns whether the plugin's walk in the shadow has passed the last row of cairn.db's events (as this connection sees it now) */
  atTop(plugin: string): boolean {
    return this.store.pluginState.cursor(plugin) >= this.store.events.maxCursor()
  }

  /**
   * From now on, records the events whose marks or keys change in the shadow (its walk goes on while the
   * difference is taken): the swap takes their difference again. Call it before the first `differ`.
   */
  watch(): void {
    this.db.exec(touchTriggers('cairn_rebuild_shadow', 'cairn_rebuild_touched_marks', 'cairn_rebuild_touched_keys', ''))
  }

  /**
   * Takes the next pages of the difference between the plugin's applied marks and state keys in the shadow and
   * in cairn.db (as this connection's transaction sees it) until `until` (performance.now()), at least one page:
   * marks and keys only the shadow has (`_new`), and those only cairn.db has (`_gone`). Run it inside a
   * transaction of the shadow, after `watch` (and cairn.db's side of it, RebuildSwap.watch): a row that
   * changes on either side after its page was taken belongs to an event recorded as touched.
   *
   * @param page how many rows of each side a page reads at most
   * @returns whether the whole difference has been taken
   */
  differ(plugin: string, until: number, page = DIFF_PAGE): boolean {
    do {
      if (this.differed.marks !== 'done') this.differed.marks = this.differMarks(plugin, this.differed.marks, page)
      else if (this.differed.keys !== 'done') this.differed.keys = this.differKeys(plugin, this.differed.keys, page)
      else return true
    } while (performance.now() < until)
    return this.differed.marks === 'done' && this.differed.keys === 'done'
  }

  /** One page of the marks' difference, after `after` (producer, event_id). @returns where the next one starts */
  private differMarks(plugin: string, after: readonly [string, string], page: number): readonly [string, string] | 'done' {
    // The page ends at the page-th row of either side, whichever comes first: it reads at most that many of each.
    const last = this.db.get<{ producer: string; event_id: string }>(
      `SELECT producer, event_id FROM (
         SELECT * FROM (SELECT producer, event_id FROM main.plugin_applied WHERE plugin = ?1 AND (producer, event_id) > (?2, ?3) ORDER BY producer, event_id LIMIT 1 OFFSET ?4)
         UNION ALL
         SELECT * FROM (SELECT producer, event_id FROM live.plugin_applied WHERE plugin = ?1 AND (producer, event_id) > (?2, ?3) ORDER BY producer, event_id LIMIT 1 OFFSET ?4)
       ) ORDER BY producer, event_id LIMIT 1`,
      [plugin, ...after, page - 1]
    )
    // The last page (fewer rows than a page left on both sides) has no upper end.
    const range = (t: string): string => `(${t}.producer, ${t}.event_id) > (?2, ?3)${last == null ? '' : ` AND (${t}.producer, ${t}.event_id) <= (?4, ?5)`}`
    const args = [plugin, ...after, ...(last == null ? [] : [last.producer, last.event_id])]
    this.db.run(
      `INSERT INTO cairn_rebuild_marks_new (producer, event_id, applied_at)
         SELECT s.producer, s.event_id, s.applied_at FROM main.plugin_applied s WHERE s.plugin = ?1 AND ${range('s')}
            AND NOT EXISTS (SELECT 1 FROM live.plugin_applied l WHERE l.plugin = ?1 AND l.producer = s.producer AND l.event_id = s.event_id)`,
      args
    )
    this.db.run(
      `INSERT INTO cairn_rebuild_marks_gone (producer, event_id)
         SELECT l.producer, l.event_id FROM live.plugin_applied l WHERE l.plugin = ?1 AND ${range('l')}
            AND NOT EXISTS (SELECT 1 FROM main.plugin_applied s WHERE s.plugin = ?1 AND s.producer = l.producer AND s.event_id = l.event_id)`,
      args
    )
    return last == null ? 'done' : [last.producer, last.event_id]
  }

  /** One page of the state keys' difference, after `after` (producer, seq; a page ends with an event's last key). @returns where the next one starts */
  private differKeys(plugin: string, after: readonly [string, number], page: number): readonly [string, number] | 'done' {
    // As for the marks; on cairn.db's side every plugin's keys count, since the page's range reads them all.
    const last = this.db.get<{ producer: string; seq: number }>(
      // `+plugin`: by the primary key's (producer, seq), not by the index on (plugin, key), which would read every key of the plugin per page.
      `SELECT producer, seq FROM (
         SELECT * FROM (SELECT producer, seq FROM main.state_keys WHERE +plugin = ?1 AND (producer, seq) > (?2, ?3) ORDER BY producer, seq LIMIT 1 OFFSET ?4)
         UNION ALL
         SELECT * FROM (SELECT producer, seq FROM live.state_keys WHERE (producer, seq) > (?2, ?3) ORDER BY producer, seq LIMIT 1 OFFSET ?4)
       ) ORDER BY producer, seq LIMIT 1`,
      [plugin, ...after, page - 1]
    )
    const range = (t: string): string => `(${t}.producer, ${t}.seq) > (?2, ?3)${last == null ? '' : ` AND (${t}.producer, ${t}.seq) <= (?4, ?5)`}`
    const args = [plugin, ...after, ...(last == null ? [] : [last.producer, last.seq])]
    this.db.run(
      `INSERT INTO cairn_rebuild_keys_new (producer, seq, key, order_key)
         SELECT s.producer, s.seq, s.key, s.order_key FROM main.state_keys s WHERE +s.plugin = ?1 AND ${range('s')}
            AND NOT EXISTS (SELECT 1 FROM live.state_keys l WHERE l.producer = s.producer AND l.seq = s.seq AND l.plugin = ?1 AND l.key = s.key)`,
      args
    )
    // Whether the event is still held is asked in the swap (housekeeping may prune it meanwhile).
    this.db.run(
      `INSERT INTO cairn_rebuild_keys_gone (producer, seq, key)
         SELECT l.producer, l.seq, l.key FROM live.state_keys l WHERE +l.plugin = ?1 AND ${range('l')}
            AND NOT EXISTS (SELECT 1 FROM main.state_keys s WHERE s.producer = l.producer AND s.seq = l.seq AND s.plugin = ?1 AND s.key = l.key)`,
      args
    )
    return last == null ? 'done' : [last.producer, last.seq]
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
 * cairn.db's side of a rebuild, on its connection: recording what changes there while the shadow takes its
 * difference (`watch`), and the statements of the swap, with the shadow attached (`attach`, then `detach` after
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

  /** @returns whether cairn.db has a table of that name, in any case */
  hasTable(table: string): boolean {
    // SQLite's names are the same in any case: DROP TABLE "PINGS" drops pings.
    return this.db.get("SELECT 1 AS x FROM pragma_table_list WHERE schema = 'main' AND name = ? COLLATE NOCASE", [table]) != null
  }

  /** Foreign keys between the plugin's tables are checked at the commit, not while its tables are copied one by one. */
  deferForeignKeys(): void {
    this.db.exec('PRAGMA defer_foreign_keys = ON')
  }

  /** @returns the plugin's tables in the shadow: those its migrations and its handlers made there (pluginTables) */
  shadowTables(): string[] {
    return pluginTables(this.db, SHADOW)
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
   * Replaces the rows of a plugin's tables in cairn.db (as its migrations left them: seed rows) with the
   * shadow's, each with its rowid (a table without an INTEGER PRIMARY KEY knows its rows by it, gaps of deleted
   * rows included), and their AUTOINCREMENT counters with the shadow's. A table the plugin's migrations did not
   * create in cairn.db (its handlers made it in the shadow) is created as the shadow has it, its indexes and
   * triggers with it. Every table is emptied before any is filled (a cascade from emptying a parent would take
   * the rows copied into its children), virtual tables first (an external-content index is emptied while its
   * content table still holds the rows it indexed). Call it inside the swap's transaction, foreign keys
   * deferred, the tables' triggers dropped.
   *
   * @throws Error for a contentless full-text table, whose index no copy can carry (such a plugin is rebuilt in
   * one transaction instead); errors from SQLite
   */
  copyTables(tables: readonly string[]): void {
    const created = tables.filter((t) => !this.hasTable(t))
    for (const table of created) {
      for (const o of this.db.all<{ sql: string }>(`SELECT sql FROM ${SHADOW}.sqlite_master WHERE tbl_name = ? AND type IN ('table', 'index') AND sql IS NOT NULL ORDER BY type DESC`, [table]))
        this.db.exec(o.sql)
    }
    const virtual = new Set(tables.filter((t) => this.db.get<{ type: string }>("SELECT type FROM pragma_table_list WHERE schema = 'main' AND name = ?", [t])?.type === 'virtual'))
    for (const table of [...tables.filter((t) => virtual.has(t)), ...tables.filter((t) => !virtual.has(t))]) {
      const fts = ftsTable(this.db, table)
      if (fts?.content === 'contentless') throw new Error(`table ${table} is a contentless ${fts.module} table: a swap cannot copy its index`)
      // FTS5's own command empties an external-content index without reading the content table at all.
      if (fts?.module === 'FTS5' && fts.content === 'external') this.db.exec(`INSERT INTO main.${quoteIdent(table)} (${quoteIdent(table)}) VALUES ('delete-all')`)
      else this.db.exec(`DELETE FROM main.${quoteIdent(table)}`)
    }
    for (const table of tables) this.fill(table)
    if (this.db.get(`SELECT 1 AS x FROM ${SHADOW}.sqlite_master WHERE name = 'sqlite_sequence'`) != null) {
      for (const table of tables) {
        this.db.run(
          `UPDATE main.sqlite_sequence SET seq = (SELECT s.seq FROM ${SHADOW}.sqlite_sequence s WHERE s.name = ?) WHERE name = ? AND EXISTS (SELECT 1 FROM ${SHADOW}.sqlite_sequence s WHERE s.name = ?)`,
          [table, table, table]
        )
      }
    }
    for (const table of created) {
      for (const t of this.db.all<{ sql: string }>(`SELECT sql FROM ${SHADOW}.sqlite_master WHERE tbl_name = ? AND type = 'trigger' AND sql IS NOT NULL`, [table])) this.db.exec(t.sql)
    }
  }

  /** Copies the shadow's rows of one emptied table into cairn.db's, rowids kept (copyTables). */
  private fill(table: string): void {
    const target = `main.${quoteIdent(table)}`
    const source = `${SHADOW}.${quoteIdent(table)}`
    if (this.transfers(table)) {
      this.db.exec(`INSERT INTO ${target} SELECT * FROM ${source}`)
      return
    }
    const languageid = ftsTable(this.db, table)?.languageid
    const names = [...this.db.all<{ name: string }>(`SELECT name FROM pragma_table_info(?, '${SHADOW}') ORDER BY cid`, [table]).map((c) => c.name), ...(languageid == null ? [] : [languageid])]
    const kind = this.db.get<{ type: string; wr: number }>('SELECT type, wr FROM pragma_table_list WHERE schema = ? AND name = ?', [SHADOW, table])
    // The rowid by a name no column took (a WITHOUT ROWID table has none; a virtual one, such as FTS5, takes it).
    const lower = new Set(names.map((n) => n.toLowerCase()))
    const rowid = (kind?.type === 'table' && kind.wr === 0) || kind?.type === 'virtual' ? ['rowid', '_rowid_', 'oid'].find((n) => !lower.has(n)) : undefined
    const columns = [...(rowid == null ? [] : [rowid]), ...names.map(quoteIdent)].join(', ')
    this.db.exec(`INSERT INTO ${target} (${columns}) SELECT ${columns} FROM ${source}`)
  }

  /**
   * Whether SQLite copies a table's records and index entries as they are, rowids included (its transfer
   * optimization: 3-4 times faster than row by row), for `INSERT INTO main.t SELECT * FROM rebuild.t` into
   * the emptied table. It compiles the transfer only for the same schema and no foreign key of the table's own
   * to check (OP_RowData in its program), and keeps the rowids only for a table with an index. Not taken for a
   * table other tables' foreign keys point at (a transfer does not count the deferred violations it resolves,
   * so the commit would fail), nor for one with generated or hidden columns (`SELECT *` is not its columns).
   */
  private transfers(table: string): boolean {
    const ordinary = this.db.get<{ type: string }>('SELECT type FROM pragma_table_list WHERE schema = ? AND name = ?', ['main', table])?.type === 'table'
    if (!ordinary) return false
    if (this.db.get("SELECT 1 AS x FROM pragma_index_list(?, 'main')", [table]) == null) return false
    if (this.db.get("SELECT 1 AS x FROM pragma_table_xinfo(?, 'main') WHERE hidden != 0", [table]) != null) return false
    const referenced = this.db.get("SELECT 1 AS x FROM main.sqlite_master m, pragma_foreign_key_list(m.name, 'main') f WHERE m.type = 'table' AND f.\"table\" = ? COLLATE NOCASE", [table])
    if (referenced != null) return false
    try {
      return this.db.opcodes(`INSERT INTO main.${quoteIdent(table)} SELECT * FROM ${SHADOW}.${quoteIdent(table)}`).includes('RowData')
    } catch {
      // It does not compile (the schemas differ): by the columns, which say what differs.
      return false
    }
  }

  /**
   * From now on, records on cairn.db's connection the events whose applied marks or state keys of `plugin` change
   * (the node's rounds apply events to the old tables, housekeeping forgets superseded keys): the swap takes
   * their difference again, since the shadow's pages may have seen them before. Call it outside any transaction,
   * before the shadow's first `differ`; `unwatch` when the rebuild ends, however it ends.
   */
  watch(plugin: string): void {
    this.db.exec(
      `CREATE TEMP TABLE IF NOT EXISTS cairn_rebuild_watching (plugin TEXT PRIMARY KEY) WITHOUT ROWID;
       CREATE TEMP TABLE IF NOT EXISTS cairn_rebuild_live_marks (plugin TEXT NOT NULL, producer TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (plugin, producer, event_id)) WITHOUT ROWID;
       CREATE TEMP TABLE IF NOT EXISTS cairn_rebuild_live_keys (plugin TEXT NOT NULL, producer TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (plugin, producer, seq)) WITHOUT ROWID;
       ${touchTriggers('cairn_rebuild_live', 'cairn_rebuild_live_marks', 'cairn_rebuild_live_keys', '$.plugin IN (SELECT plugin FROM cairn_rebuild_watching)')}`
    )
    this.db.run('INSERT OR IGNORE INTO temp.cairn_rebuild_watching (plugin) VALUES (?)', [plugin])
  }

  /** Stops recording `plugin`'s changes and forgets those recorded; the triggers go with the last rebuild watched. */
  unwatch(plugin: string): void {
    if (this.db.get("SELECT 1 AS x FROM temp.sqlite_master WHERE name = 'cairn_rebuild_watching'") == null) return
    this.db.run('DELETE FROM temp.cairn_rebuild_watching WHERE plugin = ?', [plugin])
    this.db.run('DELETE FROM temp.cairn_rebuild_live_marks WHERE plugin = ?', [plugin])
    this.db.run('DELETE FROM temp.cairn_rebuild_live_keys WHERE plugin = ?', [plugin])
    if (this.db.get("SELECT 1 AS x FROM temp.sqlite_master WHERE name = 'cairn_rebuild_swap_marks'") != null)
      this.db.exec('DELETE FROM temp.cairn_rebuild_swap_marks; DELETE FROM temp.cairn_rebuild_swap_keys')
    if (this.db.get('SELECT 1 AS x FROM temp.cairn_rebuild_watching') != null) return
    for (const t of this.db.all<{ name: string }>("SELECT name FROM temp.sqlite_master WHERE type = 'trigger' AND name LIKE 'cairn\\_rebuild\\_live\\_%' ESCAPE '\\'"))
      this.db.exec(`DROP TRIGGER temp.${quoteIdent(t.name)}`)
  }

  /**
   * Makes a plugin's applied marks, retries, dead letters, holds, cursor and state keys in cairn.db the shadow's.
   * The marks and keys of the old tables are mostly the new ones: only the difference is written (an applied
   * mark's time is then the first application's), taken by the shadow in slices (RebuildShadow.differ) and, for
   * the events whose marks or keys changed on either side since (touched), here. State keys of events no longer
   * held stay, as ever (stateKeys.forgetPlugin). Stops recording the plugin's changes (`watch`), so that this
   * swap's own writes are not; a swap rolled back records them again.
   *
   * @returns the cursor the plugin's walk reached in the shadow
   */
  copyState(plugin: string): number {
    this.db.run('DELETE FROM temp.cairn_rebuild_watching WHERE plugin = ?', [plugin])
    // The touched events, both sides' together: their marks and keys are compared whole, the others' by the
    // shadow's difference. Every statement below is driven by these few rows or by the difference's, never by a
    // scan of the plugin's marks or keys (CROSS JOIN keeps that order).
    this.db.exec(
      `CREATE TEMP TABLE IF NOT EXISTS cairn_rebuild_swap_marks (producer TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (producer, event_id)) WITHOUT ROWID;
       CREATE TEMP TABLE IF NOT EXISTS cairn_rebuild_swap_keys (producer TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (producer, seq)) WITHOUT ROWID;
       DELETE FROM temp.cairn_rebuild_swap_marks;
       DELETE FROM temp.cairn_rebuild_swap_keys;`
    )
    this.db.run('INSERT OR IGNORE INTO temp.cairn_rebuild_swap_marks SELECT producer, event_id FROM temp.cairn_rebuild_live_marks WHERE plugin = ?', [plugin])
    this.db.run(`INSERT OR IGNORE INTO temp.cairn_rebuild_swap_marks SELECT producer, event_id FROM ${SHADOW}.cairn_rebuild_touched_marks`)
    this.db.run('INSERT OR IGNORE INTO temp.cairn_rebuild_swap_keys SELECT producer, seq FROM temp.cairn_rebuild_live_keys WHERE plugin = ?', [plugin])
    this.db.run(`INSERT OR IGNORE INTO temp.cairn_rebuild_swap_keys SELECT producer, seq FROM ${SHADOW}.cairn_rebuild_touched_keys`)
    const untouchedMark = (t: string): string => `NOT EXISTS (SELECT 1 FROM temp.cairn_rebuild_swap_marks x WHERE x.producer = ${t}.producer AND x.event_id = ${t}.event_id)`
    const untouchedKey = (t: string): string => `NOT EXISTS (SELECT 1 FROM temp.cairn_rebuild_swap_keys x WHERE x.producer = ${t}.producer AND x.seq = ${t}.seq)`
    const held = (t: string): string => `EXISTS (SELECT 1 FROM main.events e WHERE e.producer = ${t}.producer AND e.seq = ${t}.seq)`

    // Applied marks: by the difference…
    this.db.run(
      `DELETE FROM main.plugin_applied WHERE rowid IN (
         SELECT a.rowid FROM ${SHADOW}.cairn_rebuild_marks_gone g CROSS JOIN main.plugin_applied a ON a.plugin = ?1 AND a.producer = g.producer AND a.event_id = g.event_id
          WHERE ${untouchedMark('g')})`,
      [plugin]
    )
    this.db.run(
      `INSERT OR IGNORE INTO main.plugin_applied (plugin, producer, event_id, applied_at)
         SELECT ?1, n.producer, n.event_id, n.applied_at FROM ${SHADOW}.cairn_rebuild_marks_new n WHERE ${untouchedMark('n')}`,
      [plugin]
    )
    // …and of the touched events, the shadow's.
    this.db.run(
      `DELETE FROM main.plugin_applied WHERE rowid IN (
         SELECT a.rowid FROM temp.cairn_rebuild_swap_marks t CROSS JOIN main.plugin_applied a ON a.plugin = ?1 AND a.producer = t.producer AND a.event_id = t.event_id
          WHERE NOT EXISTS (SELECT 1 FROM ${SHADOW}.plugin_applied n WHERE n.plugin = ?1 AND n.producer = a.producer AND n.event_id = a.event_id))`,
      [plugin]
    )
    this.db.run(
      `INSERT OR IGNORE INTO main.plugin_applied (plugin, producer, event_id, applied_at)
         SELECT n.plugin, n.producer, n.event_id, n.applied_at FROM temp.cairn_rebuild_swap_marks t CROSS JOIN ${SHADOW}.plugin_applied n ON n.plugin = ?1 AND n.producer = t.producer AND n.event_id = t.event_id`,
      [plugin]
    )
    for (const table of WAITING) {
      this.db.run(`DELETE FROM main.${table} WHERE plugin = ?`, [plugin])
      this.db.run(`INSERT INTO main.${table} SELECT * FROM ${SHADOW}.${table} WHERE plugin = ?`, [plugin])
    }
    // State keys (of events still held: the others' stay), the same way.
    this.db.run(
      `DELETE FROM main.state_keys WHERE rowid IN (
         SELECT k.rowid FROM ${SHADOW}.cairn_rebuild_keys_gone g CROSS JOIN main.state_keys k ON k.producer = g.producer AND k.seq = g.seq AND k.plugin = ?1 AND k.key = g.key
          WHERE ${untouchedKey('g')} AND ${held('g')})`,
      [plugin]
    )
    this.db.run(
      `INSERT OR IGNORE INTO main.state_keys (plugin, key, producer, seq, order_key)
         SELECT ?1, n.key, n.producer, n.seq, n.order_key FROM ${SHADOW}.cairn_rebuild_keys_new n WHERE ${untouchedKey('n')}`,
      [plugin]
    )
    this.db.run(
      `DELETE FROM main.state_keys WHERE rowid IN (
         SELECT k.rowid FROM temp.cairn_rebuild_swap_keys t CROSS JOIN main.state_keys k ON k.producer = t.producer AND k.seq = t.seq AND k.plugin = ?1
          WHERE ${held('t')} AND NOT EXISTS (SELECT 1 FROM ${SHADOW}.state_keys n WHERE n.producer = k.producer AND n.seq = k.seq AND n.plugin = ?1 AND n.key = k.key))`,
      [plugin]
    )
    this.db.run(
      `INSERT OR IGNORE INTO main.state_keys (plugin, key, producer, seq, order_key)
         SELECT n.plugin, n.key, n.producer, n.seq, n.order_key FROM temp.cairn_rebuild_swap_keys t CROSS JOIN ${SHADOW}.state_keys n ON n.producer = t.producer AND n.seq = t.seq AND n.plugin = ?1`,
      [plugin]
    )
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
