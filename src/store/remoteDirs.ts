import type { SqlDatabase, SqlValue } from '../runtime/sqlite.ts'

/** Paths looked up, or directories recorded, in one statement at most (a statement is kept per count up to it). */
const PER_STATEMENT = 32

/**
 * A day's path is its name (yyyy-mm-dd), an hour's `day/hh`, a shard's `day/hh#X#Y…`. In byte order
 * every path of day `d` lies in [d, d + '0') ('/' < '0'), every path of hours `d/aa` to `d/bb` in
 * [d/aa, d/bb + '$') ('#' < '$'), and the next day or hour comes after that bound.
 */
const DAY_LENGTH = 10
const DAY_END = '0'
const HOUR_END = '$'

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

  /** @returns whether a walk of any producer's tree ever completed here (its blocks are in blocks.db) */
  any(): boolean {
    return this.db.get('SELECT 1 FROM remote_dirs LIMIT 1') != null
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

  /**
   * @returns the days `producer` has rows of, in order, after the day `after` (from the first, without it),
   * at most `limit`: one look-up of the primary key per day, whatever the rows below them
   */
  days(producer: string, limit: number, after?: string): string[] {
    const out: string[] = []
    let from = after == null ? '' : after + DAY_END
    while (out.length < limit) {
      const row = this.db.get<{ path: string }>('SELECT path FROM remote_dirs WHERE producer = ? AND path >= ? ORDER BY path LIMIT 1', [producer, from])
      if (row == null) break
      const day = row.path.slice(0, DAY_LENGTH)
      out.push(day)
      // Past every path of this day; past this row in any case, so the loop always moves on.
      from = maxString(day + DAY_END, `${row.path}\u0001`)
    }
    return out
  }

  /** Forgets a day of `producer` with everything below it. @returns the rows deleted */
  forgetDay(producer: string, day: string): number {
    return this.db.run('DELETE FROM remote_dirs WHERE producer = ? AND path >= ? AND path < ?', [producer, day, day + DAY_END]).changes
  }

  /**
   * Forgets the hours of `day` of `producer` that `kept` (hour names, `hh`) does not hold, each with its
   * shards: one statement per run of consecutive hours (00-23) forgotten, none for a day that keeps all 24.
   *
   * @returns the rows deleted
   */
  forgetHoursBut(producer: string, day: string, kept: ReadonlySet<string>): number {
    let deleted = 0
    for (let from = 0; from < HOURS; from++) {
      if (kept.has(hourName(from))) continue
      let to = from
      while (to + 1 < HOURS && !kept.has(hourName(to + 1))) to++
      deleted += this.db.run('DELETE FROM remote_dirs WHERE producer = ? AND path >= ? AND path < ?', [producer, `${day}/${hourName(from)}`, `${day}/${hourName(to)}${HOUR_END}`]).changes
      from = to
    }
    return deleted
  }
}

/** An hour bucket is named 00-23. */
const HOURS = 24
const hourName = (hour: number): string => String(hour).padStart(2, '0')
const maxString = (a: string, b: string): string => (a > b ? a : b)
