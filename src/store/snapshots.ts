import type { SqlDatabase, SqlValue } from '../runtime/sqlite.ts'
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

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/

const toValue = (x: unknown): SnapshotValue => {
  if (x instanceof Uint8Array) return { $bytes: Buffer.from(x).toString('base64') }
  if (typeof x === 'bigint') return Number(x)
  if (typeof x === 'boolean') return x ? 1 : 0
  return x as string | number | null
}

const fromValue = (x: SnapshotValue): SqlValue => (x != null && typeof x === 'object' ? new Uint8Array(Buffer.from(x.$bytes, 'base64')) : x)

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

  /** @returns every row of `tables`, ordered by all columns, so that equal tables give equal snapshots */
  dump(tables: readonly string[]): SnapshotTables {
    const out: SnapshotTables = {}
    for (const t of tables) {
      if (!IDENT.test(t)) throw new TypeError(`not a table name: ${t}`)
      const columns = this.db.all<{ name: string }>(`SELECT name FROM pragma_table_info(?) ORDER BY cid`, [t]).map((c) => c.name)
      if (columns.length === 0) continue
      const order = columns.map((_, i) => i + 1).join(', ')
      const rows = this.db.all<Record<string, unknown>>(`SELECT * FROM "${t}" ORDER BY ${order}`)
      out[t] = { columns, rows: rows.map((r) => columns.map((c) => toValue(r[c]))) }
    }
    return out
  }

  /**
   * Replaces the rows of `owned` (a plugin's tables) with a snapshot's, and records where they came from.
   * Call it inside the transaction that also rewinds the plugin.
   *
   * @throws Error when the snapshot holds a table outside `owned` or a column the table does not have
   */
  replace(owned: readonly string[], tables: SnapshotTables, from: Omit<LoadedSnapshot, 'loaded_at'>, at: number): void {
    for (const name of Object.keys(tables)) if (!owned.includes(name)) throw new Error(`the snapshot holds table ${name}, which plugin ${from.plugin} does not own`)
    for (const t of owned) {
      if (!IDENT.test(t)) throw new TypeError(`not a table name: ${t}`)
      this.db.run(`DELETE FROM "${t}"`)
    }
    for (const [name, t] of Object.entries(tables)) {
      for (const c of t.columns) if (!IDENT.test(c)) throw new Error(`the snapshot's table ${name} has a column named ${JSON.stringify(c)}`)
      const sql = `INSERT INTO "${name}" (${t.columns.map((c) => `"${c}"`).join(', ')}) VALUES (${t.columns.map(() => '?').join(', ')})`
      for (const row of t.rows) this.db.run(sql, row.map(fromValue))
    }
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

  /** @returns the snapshots this node publishes, by plugin */
  own(): Array<{ plugin: string; cid: string; size: number; vector: Record<string, number>; created_at: number }> {
    return this.db
      .all<{ plugin: string; cid: string; size: number; vector: string; created_at: number }>('SELECT plugin, cid, size, vector, created_at FROM snapshots_out ORDER BY plugin')
      .map((r) => ({ ...r, vector: JSON.parse(r.vector) as Record<string, number> }))
  }
}
