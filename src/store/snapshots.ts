import type { SqlDatabase, SqlValue } from '../runtime/sqlite.ts'
import { IDENT, quoteIdent } from './identifiers.ts'
import { Buffer } from 'node:buffer'

/** A SQL value as a snapshot carries it: bytes as `{ $bytes: base64 }`. */
export type SnapshotValue = string | number | null | { $bytes: string }

/** Tables as a snapshot carries them. */
export type SnapshotTables = Record<string, { columns: string[]; rows: SnapshotValue[][] }>

/** The snapshot a plugin's state was loaded from. */
export interface LoadedSnapshot {
  plugin: string
  producer: string
  vector: Record<string, number>
  created_at: string
  loaded_at: number
}

const toValue = (x: unknown): SnapshotValue => {
  if (x instanceof Uint8Array) return { $bytes: Buffer.from(x).toString('base64') }
  if (typeof x === 'bigint') return Number(x)
  if (typeof x === 'boolean') return x ? 1 : 0
  return x as string | number | null
}

const fromValue = (x: SnapshotValue): SqlValue => (x != null && typeof x === 'object' ? new Uint8Array(Buffer.from(x.$bytes, 'base64')) : x)

/**
 * Where a full-text table's indexed text lives: in the table itself (`own`), in another table it names with
 * `content=` (`external`: its index is rebuilt from that table), or nowhere (`contentless`, an empty `content=`:
 * only its index, which SQL cannot read back or write but through the rows).
 */
export type FtsContent = 'own' | 'external' | 'contentless'

/** A full-text table: its module (FTS3, FTS4 or FTS5) and where its text lives. */
export interface FtsTable {
  module: 'FTS3' | 'FTS4' | 'FTS5'
  content: FtsContent
  /** FTS4's `languageid=` column: hidden (no `SELECT *` or table_info shows it), written and read by name */
  languageid?: string
}

/** @returns `value` without the quotes SQLite accepts around a name or string ('', "", ``, []), or as it is */
function unquote(value: string): string {
  const q = value[0]
  if (q === '[' && value.endsWith(']')) return value.slice(1, -1)
  if ((q === "'" || q === '"' || q === '`') && value.length >= 2 && value.endsWith(q)) return value.slice(1, -1).replaceAll(q + q, q)
  return value
}

/** @returns the CREATE statement of table `table` of `schema`, or undefined when there is none */
function tableSql(db: SqlDatabase, table: string, schema: string): string | undefined {
  if (!IDENT.test(schema)) throw new TypeError(`not a schema name: ${schema}`)
  return db.get<{ sql: string | null }>(`SELECT sql FROM ${schema}.sqlite_master WHERE type = 'table' AND name = ?`, [table])?.sql ?? undefined
}

/** @returns the full-text table `table` of `schema`: its module and where its text lives; undefined when it is not one */
export function ftsTable(db: SqlDatabase, table: string, schema = 'main'): FtsTable | undefined {
  const sql = tableSql(db, table, schema)
  const using = sql == null ? null : /^\s*CREATE\s+VIRTUAL\s+TABLE\b[\s\S]*?\bUSING\s+(fts[345])\s*\(/i.exec(sql)
  if (sql == null || using == null) return undefined
  const module = using[1].toUpperCase() as FtsTable['module']
  const value = (name: string): string | undefined => {
    const m = new RegExp(`[(,]\\s*${name}\\s*=\\s*('(?:[^']|'')*'|"(?:[^"]|"")*"|\`(?:[^\`]|\`\`)*\`|\\[[^\\]]*\\]|[^\\s,)]+)`, 'i').exec(sql)
    return m == null ? undefined : unquote(m[1])
  }
  const content = value('content')
  const languageid = module === 'FTS4' ? value('languageid') : undefined
  return { module, content: content == null ? 'own' : content === '' ? 'contentless' : 'external', ...(languageid == null ? {} : { languageid }) }
}

/** The virtual table modules that only read other tables' indexes (a CREATE statement using one). */
const READ_ONLY_MODULE = /\bUSING\s+(fts5vocab|fts4aux|dbstat)\s*\(/i

/** @returns whether `sql` (a CREATE statement) makes a virtual table that only reads another's index: it holds no rows to copy or carry */
export function readOnlyVirtual(sql: string | null | undefined): boolean {
  return sql != null && READ_ONLY_MODULE.test(sql)
}

/** @returns whether `table` of `schema` is such a table (readOnlyVirtual) */
function readOnlyTable(db: SqlDatabase, table: string, schema = 'main'): boolean {
  return readOnlyVirtual(tableSql(db, table, schema))
}

/**
 * The snapshot tables: `snapshots_out` (the snapshot this node publishes per plugin, in its outbox tree)
 * and `snapshots_loaded` (the snapshot a plugin's state came from), and the reading and writing of a
 * plugin's tables as a snapshot holds them.
 */
export class SnapshotsTable {
  private readonly db: SqlDatabase

  constructor(db: SqlDatabase) {
    this.db = db
  }

  /** @returns the full-text tables among `tables` whose index no snapshot can carry (contentless: `content=''`) */
  uncarried(tables: readonly string[]): string[] {
    return tables.filter((t) => ftsTable(this.db, t)?.content === 'contentless')
  }

  /**
   * @returns every row of `tables`, ordered by all columns, so that equal tables give equal snapshots; a full-text
   * table's rows with their rowids (what other rows know them by), none of one with external content (its index
   * is rebuilt from its content table at load)
   * @throws TypeError for a contentless full-text table (see uncarried)
   */
  dump(tables: readonly string[]): SnapshotTables {
    // No prototype: a table named __proto__ is a key like any other.
    const out: SnapshotTables = Object.create(null)
    for (const t of tables) {
      const fts = ftsTable(this.db, t)
      if (fts?.content === 'contentless') throw new TypeError(`table ${t} is a contentless ${fts.module} table: a snapshot cannot carry its index`)
      // An FTS5 index with external content is not carried (rebuilt from its content at load); an FTS4 one is, as
      // builds before FTS4 was known carried it (their loads would empty it and never index it again), and loads skip it.
      if ((fts?.content === 'external' && fts.module === 'FTS5') || readOnlyTable(this.db, t)) continue
      const names = this.db.all<{ name: string }>(`SELECT name FROM pragma_table_info(?) ORDER BY cid`, [t]).map((c) => c.name)
      if (names.length === 0) continue
      // A full-text table refuses a column named rowid: the name is free.
      const columns = fts?.content === 'own' ? ['rowid', ...names, ...(fts.languageid == null ? [] : [fts.languageid])] : names
      const order = columns.map((_, i) => i + 1).join(', ')
      const rows = this.db.all<Record<string, unknown>>(`SELECT ${columns.map(quoteIdent).join(', ')} FROM main.${quoteIdent(t)} ORDER BY ${order}`)
      out[t] = { columns, rows: rows.map((r) => columns.map((c) => toValue(r[c]))) }
    }
    return out
  }

  /** @returns the tables among `owned` whose rows a snapshot holds: those that exist, but external-content full-text tables and read-only index views */
  carried(owned: readonly string[]): string[] {
    return owned.filter((t) => ftsTable(this.db, t)?.content !== 'external' && !readOnlyTable(this.db, t) && this.exists(t))
  }

  /** @returns the tables among `owned` that cairn.db does not have (its migrations renamed or dropped them) */
  absent(owned: readonly string[]): string[] {
    return owned.filter((t) => !this.exists(t))
  }

  /** @returns whether cairn.db has table `table` */
  private exists(table: string): boolean {
    return this.db.get("SELECT 1 AS x FROM pragma_table_list WHERE schema = 'main' AND name = ?", [table]) != null
  }

  /** @returns the tables a snapshot's `tables` should hold of `owned` (carried) and does not */
  lacking(owned: readonly string[], tables: SnapshotTables): string[] {
    return this.carried(owned).filter((t) => !Object.hasOwn(tables, t))
  }

  /**
   * Replaces the rows of `owned` (a plugin's tables) with a snapshot's, and records where they came from.
   * Call it inside the transaction that also rewinds the plugin.
   *
   * The index of a full-text table with external content is rebuilt from its content table once every row is in
   * (rows a snapshot holds for it are passed over: inserted, they would index its content a second time).
   *
   * @throws Error when the snapshot holds a table outside `owned` or a column the table does not have; TypeError
   * when `owned` holds a contentless full-text table (see uncarried)
   */
  replace(owned: readonly string[], tables: SnapshotTables, from: Omit<LoadedSnapshot, 'loaded_at'>, at: number): void {
    for (const name of Object.keys(tables)) if (!owned.includes(name)) throw new Error(`the snapshot holds table ${name}, which plugin ${from.plugin} does not own`)
    const external: string[] = []
    for (const t of owned) {
      const fts = ftsTable(this.db, t)
      if (fts?.content === 'contentless') throw new TypeError(`table ${t} is a contentless ${fts.module} table: a snapshot cannot carry its index`)
      if (fts?.content === 'external') external.push(t)
    }
    const carried = this.carried(owned)
    // Emptied and left so, the table would lose the state of every event up to the snapshot's vector.
    const lacking = this.lacking(owned, tables)
    if (lacking.length > 0) throw new Error(`the snapshot lacks table(s) ${lacking.join(', ')} of plugin ${from.plugin} (made by another version of the plugin, or of cairn)`)
    for (const t of carried) this.db.run(`DELETE FROM main.${quoteIdent(t)}`)
    for (const [name, t] of Object.entries(tables)) {
      // Only the carried tables: neither an external-content index (indexed again below) nor a read-only view.
      if (!carried.includes(name)) continue
      // The snapshot is another node's: its column names must be the table's own (a full-text table's rows come with their rowids).
      const known = new Set(this.db.all<{ name: string }>('SELECT name FROM pragma_table_info(?)', [name]).map((c) => c.name))
      const fts = ftsTable(this.db, name)
      if (fts?.content === 'own') known.add('rowid')
      if (fts?.languageid != null) known.add(fts.languageid)
      for (const c of t.columns) if (!known.has(c)) throw new Error(`the snapshot's table ${name} has a column named ${JSON.stringify(c)}, which the table does not have`)
      const sql = `INSERT INTO main.${quoteIdent(name)} (${t.columns.map(quoteIdent).join(', ')}) VALUES (${t.columns.map(() => '?').join(', ')})`
      for (const row of t.rows) this.db.run(sql, row.map(fromValue))
    }
    for (const t of external) this.db.run(`INSERT INTO main.${quoteIdent(t)} (${quoteIdent(t)}) VALUES ('rebuild')`)
    this.db.run(
      `INSERT INTO snapshots_loaded (plugin, producer, vector, created_at, loaded_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (plugin) DO UPDATE SET producer = excluded.producer, vector = excluded.vector, created_at = excluded.created_at, loaded_at = excluded.loaded_at`,
      [from.plugin, from.producer, JSON.stringify(from.vector), from.created_at, at]
    )
  }

  /** Forgets the snapshot a plugin's state was loaded from (its tables were rebuilt). */
  forget(plugin: string): void {
    this.db.run('DELETE FROM snapshots_loaded WHERE plugin = ?', [plugin])
  }

  /** @returns the snapshot a plugin's state was loaded from, or undefined */
  loaded(plugin: string): LoadedSnapshot | undefined {
    const r = this.db.get<Omit<LoadedSnapshot, 'vector'> & { vector: string }>('SELECT plugin, producer, vector, created_at, loaded_at FROM snapshots_loaded WHERE plugin = ?', [plugin])
    return r == null ? undefined : { ...r, vector: JSON.parse(r.vector) as Record<string, number> }
  }

  /** @returns every loaded snapshot, by plugin */
  allLoaded(): LoadedSnapshot[] {
    return this.db
      .all<Omit<LoadedSnapshot, 'vector'> & { vector: string }>('SELECT plugin, producer, vector, created_at, loaded_at FROM snapshots_loaded ORDER BY plugin')
      .map((r) => ({ ...r, vector: JSON.parse(r.vector) as Record<string, number> }))
  }

  /** Records the snapshot this node publishes for a plugin (the file in its outbox tree). */
  putOwn(plugin: string, cid: string, size: number, vector: Record<string, number>, at: number): void {
    this.db.run(
      `INSERT INTO snapshots_out (plugin, cid, size, vector, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (plugin) DO UPDATE SET cid = excluded.cid, size = excluded.size, vector = excluded.vector, created_at = excluded.created_at`,
      [plugin, cid, size, JSON.stringify(vector), at]
    )
  }

  /** Forgets the snapshot this node published for a plugin (its file left the outbox tree). */
  deleteOwn(plugin: string): void {
    this.db.run('DELETE FROM snapshots_out WHERE plugin = ?', [plugin])
  }

  /** @returns the snapshots this node publishes, by plugin */
  own(): Array<{ plugin: string; cid: string; size: number; vector: Record<string, number>; created_at: number }> {
    return this.db
      .all<{ plugin: string; cid: string; size: number; vector: string; created_at: number }>('SELECT plugin, cid, size, vector, created_at FROM snapshots_out ORDER BY plugin')
      .map((r) => ({ ...r, vector: JSON.parse(r.vector) as Record<string, number> }))
  }
}
