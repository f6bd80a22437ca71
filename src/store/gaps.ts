import type { SqlDatabase } from '../runtime/sqlite.ts'

/**
 * What a gap is to this node: `lost` (events it should have had are gone and nothing covers them: an
 * alarm), `compacted` (its producer pruned them as superseded by newer events, which this node has) or
 * `horizon` (pruned before this node first heard of the producer: where its history starts).
 */
export type GapKind = 'lost' | 'compacted' | 'horizon'

/** A recorded gap: seqs `from_seq..to_seq` of a producer that its tree no longer held when walked. */
export interface GapRow {
  producer: string
  from_seq: number
  to_seq: number
  detected_at: number
  kind: GapKind
  /** how many seqs of the range are missing: all of them but in a range widened past GAPS_KEEP */
  missing: number
}

/**
 * The most rows of one producer's gaps of one kind kept: past them, a walk's gap of that kind
 * widens the producer's last gap of its kind (which then spans seqs that were not missing, and counts those that
 * were), so that heads that skip seqs, which a member signs as fast as it likes, cannot grow the table without
 * end. An honest producer can reach it too: a history compacted before this node joined has a horizon gap per
 * hole. Widening never hides a missing seq, nor changes its kind.
 */
export const GAPS_KEEP = 10_000

/** A gap row's columns as GapRow reads them: `missing` is the whole range but in a range widened past GAPS_KEEP. */
const GAP_COLUMNS = 'producer, from_seq, to_seq, detected_at, kind, coalesce(missing, to_seq - from_seq + 1) AS missing'

/** The `gaps` table: ranges of a producer's seqs that were pruned before this node could fetch them. */
export class GapsTable {
  private readonly db: SqlDatabase
  /** producers and kinds whose gaps were widened since the start (firstWidening): three per producer at most */
  private readonly widening = new Set<string>()

  constructor(db: SqlDatabase) {
    this.db = db
  }

  /** Records a gap as a row of its own; one that starts at the same seq is kept as first recorded. @returns 1, or 0 for such a one */
  add(producer: string, fromSeq: number, toSeq: number, detectedAt: number, kind: GapKind = 'lost'): number {
    return this.db.run('INSERT OR IGNORE INTO gaps (producer, from_seq, to_seq, detected_at, kind) VALUES (?, ?, ?, ?, ?)', [producer, fromSeq, toSeq, detectedAt, kind]).changes
  }

  /**
   * Records a walk's gaps of `producer`, in seq order and after every gap recorded of it before (a walk goes on
   * from the producer's processed seq): each as a row while the producer has fewer than `keep` rows of its kind,
   * else by widening the producer's last gap of its kind to its end (counting in `missing` only the seqs past
   * that gap's end).
   *
   * @returns the indexes in `gaps` of those recorded by widening
   */
  record(producer: string, gaps: ReadonlyArray<readonly [number, number, GapKind]>, detectedAt: number, keep = GAPS_KEEP): Set<number> {
    const widened = new Set<number>()
    // Counted once per walk's chunk and kind, through gaps_kind: at most `keep` entries each.
    const rows = new Map<GapKind, number>()
    const rowsOf = (kind: GapKind): number =>
      rows.get(kind) ?? this.db.get<{ n: number }>('SELECT count(*) AS n FROM (SELECT 1 FROM gaps WHERE producer = ? AND kind = ? LIMIT ?)', [producer, kind, keep])?.n ?? 0
    gaps.forEach(([from, to, kind], i) => {
      const n = rowsOf(kind)
      rows.set(kind, n)
      const last =
        n < keep
          ? 0
          : this.db.run(
              `UPDATE gaps SET to_seq = max(to_seq, ?), missing = coalesce(missing, to_seq - from_seq + 1) + max(0, ? - max(to_seq + 1, ?) + 1)
                WHERE producer = ? AND from_seq = (SELECT max(from_seq) FROM gaps WHERE producer = ? AND kind = ? AND from_seq <= ?)`,
              [to, to, from, producer, producer, kind, from]
            ).changes
      if (last > 0) widened.add(i)
      else rows.set(kind, n + this.add(producer, from, to, detectedAt, kind))
    })
    return widened
  }

  /** @returns whether this is the first time since the start that `producer`'s gaps of `kind` were widened (to say so once) */
  firstWidening(producer: string, kind: GapKind): boolean {
    const key = `${kind} ${producer}`
    if (this.widening.has(key)) return false
    this.widening.add(key)
    return true
  }

  /**
   * @returns `producer`'s lost gaps that end after seq `after` (a loaded snapshot covers those up to it): how
   * many, and the first `limit` of them by seq. Indexed by producer: a member that skips every other seq
   * has a gap per event, and status must not read them all.
   */
  lostAfter(producer: string, after: number, limit: number): { count: number; first: GapRow[] } {
    const count = this.db.get<{ n: number }>("SELECT count(*) AS n FROM gaps WHERE producer = ? AND kind = 'lost' AND to_seq > ?", [producer, after])?.n ?? 0
    if (count === 0) return { count, first: [] }
    const first = this.db.all<GapRow>(`SELECT ${GAP_COLUMNS} FROM gaps WHERE producer = ? AND kind = 'lost' AND to_seq > ? ORDER BY from_seq LIMIT ?`, [producer, after, limit])
    return { count, first }
  }

  /**
   * @returns per producer with gaps of the harmless kinds, the last seq before its history starts here (the
   * highest `horizon` gap's end, 0 without one) and how many seqs compaction removed
   */
  covered(): Array<{ producer: string; horizon: number; compacted: number }> {
    return this.db.all<{ producer: string; horizon: number; compacted: number }>(
      `SELECT producer, coalesce(max(CASE WHEN kind = 'horizon' THEN to_seq END), 0) AS horizon,
              coalesce(sum(CASE WHEN kind = 'compacted' THEN coalesce(missing, to_seq - from_seq + 1) END), 0) AS compacted
         FROM gaps WHERE kind != 'lost' GROUP BY producer ORDER BY producer`
    )
  }

  /**
   * @returns per producer, its gaps that a plugin's state misses (horizon and lost) past `vector[producer]`
   * (what a loaded snapshot covers; 0 for a producer it does not name): the lowest seq, the highest and how
   * many gaps, ordered by producer. Summed by SQL: a member that skips every other seq has a gap per event.
   */
  missedPast(vector: Record<string, number>): Array<{ producer: string; from_seq: number; to_seq: number; gaps: number }> {
    return this.db.all<{ producer: string; from_seq: number; to_seq: number; gaps: number }>(
      // Materialized, the vector gets an automatic index on key; joined to json_each directly, SQLite scans
      // the whole vector for every gap (gaps x producers).
      `WITH v AS MATERIALIZED (SELECT key, value FROM json_each(?))
       SELECT g.producer, min(g.from_seq) AS from_seq, max(g.to_seq) AS to_seq, count(*) AS gaps
         FROM gaps g LEFT JOIN v ON v.key = g.producer
        WHERE g.kind != 'compacted' AND g.to_seq > coalesce(v.value, 0)
        GROUP BY g.producer ORDER BY g.producer`,
      [JSON.stringify(vector)]
    )
  }

  /** @returns every gap (of one kind, when given), ordered by producer and seq */
  list(kind?: GapKind): GapRow[] {
    if (kind != null) return this.db.all<GapRow>(`SELECT ${GAP_COLUMNS} FROM gaps WHERE kind = ? ORDER BY producer, from_seq`, [kind])
    return this.db.all<GapRow>(`SELECT ${GAP_COLUMNS} FROM gaps ORDER BY producer, from_seq`)
  }
}
