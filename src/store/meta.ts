import type { SqlDatabase } from '../runtime/sqlite.ts'

/** The `meta` table: small named values, such as the last housekeeping run and the bytes it reclaimed in all. */
export class MetaTable {
  private readonly db: SqlDatabase

  constructor(db: SqlDatabase) {
    this.db = db
  }

  /** @returns a value, or undefined */
  get(key: string): string | undefined {
    return this.db.get<{ value: string }>('SELECT value FROM meta WHERE key = ?', [key])?.value
  }

  /** Sets a value. */
  put(key: string, value: string): void {
    this.db.run('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value', [key, value])
  }

  /** Removes a value. */
  delete(key: string): void {
    this.db.run('DELETE FROM meta WHERE key = ?', [key])
  }

  /** Adds `n` to an integer value (absent counts as 0). */
  add(key: string, n: number): void {
    this.db.run('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + excluded.value', [key, String(n)])
  }
}
