import type { SqlDatabase, SqlValue } from '../runtime/sqlite.ts'

/** Paths looked up, or directories recorded, in one statement at most (a statement is kept per count up to it). */
const PER_STATEMENT = 32

/**
 * The `remote_dirs` table: per producer, the CID each directory of its tree (day, hour, HAMT shard) had
 * at the last complete walk. A walk descends only into directories whose CID changed since.
 */
export class RemoteDirsTable {
  private readonly db: SqlDatabase

  constructor(db: SqlDatabase) {
    this.db = db
  }

  /**
   * @returns per path of `paths` that was walked before, its CID then: one statement per PER_STATEMENT
   * paths (a shard's children, a day's hours)
   */
  many(producer: string, paths: readonly string[]): Map<string, string> {
    const out = new Map<string, string>()
    for (let i = 0; i < paths.length; i += PER_STATEMENT) {
      const some = paths.slice(i, i + PER_STATEMENT)
      const rows = this.db.all<{ path: string; cid: string }>(`SELECT path, cid FROM remote_dirs WHERE producer = ? AND path IN (${some.map(() => '?').join(',')})`, [producer, ...some])
      for (const r of rows) out.set(r.path, r.cid)
    }
    return out
  }

  /** Records the CID of each walked directory of `producer`, as [path, cid]: PER_STATEMENT rows in one statement. */
  putAll(producer: string, dirs: Iterable<readonly [string, string]>): void {
    const all = [...dirs]
    for (let i = 0; i < all.length; i += PER_STATEMENT) {
      const some = all.slice(i, i + PER_STATEMENT)
      const params: SqlValue[] = []
      for (const [path, cid] of some) params.push(producer, path, cid)
      this.db.run(`INSERT INTO remote_dirs (producer, path, cid) VALUES ${some.map(() => '(?, ?, ?)').join(', ')} ON CONFLICT (producer, path) DO UPDATE SET cid = excluded.cid`, params)
    }
  }
}
