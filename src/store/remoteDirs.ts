import type { SqlDatabase } from '../runtime/sqlite.ts'

/**
 * The `remote_dirs` table: per producer, the CID each directory of its tree (day, hour, HAMT shard) had
 * at the last complete walk. A walk descends only into directories whose CID changed since.
 */
export class RemoteDirsTable {
  private readonly db: SqlDatabase

  constructor(db: SqlDatabase) {
    this.db = db
  }

  /** @returns the CID `path` of `producer` had at the last walk, or undefined */
  get(producer: string, path: string): string | undefined {
    return this.db.get<{ cid: string }>('SELECT cid FROM remote_dirs WHERE producer = ? AND path = ?', [producer, path])?.cid
  }

  /** @returns per path of `paths` that was walked before, its CID then: one statement for a shard's children */
  many(producer: string, paths: readonly string[]): Map<string, string> {
    if (paths.length === 0) return new Map()
    return new Map(
      this.db
        .all<{ path: string; cid: string }>(`SELECT path, cid FROM remote_dirs WHERE producer = ? AND path IN (${paths.map(() => '?').join(',')})`, [producer, ...paths])
        .map((r) => [r.path, r.cid])
    )
  }

  /** Records the CID of each walked directory of `producer`, as [path, cid]. */
  putAll(producer: string, dirs: Iterable<readonly [string, string]>): void {
    for (const [path, cid] of dirs) {
      this.db.run('INSERT INTO remote_dirs (producer, path, cid) VALUES (?, ?, ?) ON CONFLICT (producer, path) DO UPDATE SET cid = excluded.cid', [producer, path, cid])
    }
  }
}
