import { openDatabase, type SqlDatabase } from '../runtime/sqlite.ts'

/** The node's database opened read-only, for the operator's own queries (`cairn sql`): writes fail. */
export class ReadOnlyDatabase {
  private readonly db: SqlDatabase

  private constructor(db: SqlDatabase) {
    this.db = db
  }

  /** Opens the database at `path` read-only, with `query_only` on as well. */
  static async open(path: string): Promise<ReadOnlyDatabase> {
    const db = await openDatabase(path, { readonly: true })
    try {
      db.exec('PRAGMA query_only = ON')
    } catch (err) {
      db.close()
      throw err
    }
    return new ReadOnlyDatabase(db)
  }

  /**
   * @returns the rows of the operator's `sql`
   * @throws Error from SQLite: a syntax error, or a write refused
   */
  query(sql: string): Array<Record<string, unknown>> {
    return this.db.all(sql)
  }

  close(): void {
    this.db.close()
  }
}
