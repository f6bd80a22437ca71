import type { SqlDatabase } from '../runtime/sqlite.ts'

/** A recorded gap: seqs `from_seq..to_seq` of a producer that its tree no longer held when walked. */
export interface GapRow {
  producer: string
  from_seq: number
  to_seq: number
  detected_at: number
}

/** The `gaps` table: ranges of a producer's seqs that were pruned before this node could fetch them. */
export class GapsTable {
  private readonly db: SqlDatabase

  constructor(db: SqlDatabase) {
    this.db = db
  }

  /** Records a gap; one that starts at the same seq is kept as first recorded. */
  add(producer: string, fromSeq: number, toSeq: number, detectedAt: number): void {
    this.db.run('INSERT OR IGNORE INTO gaps (producer, from_seq, to_seq, detected_at) VALUES (?, ?, ?, ?)', [producer, fromSeq, toSeq, detectedAt])
  }

  /** @returns every gap, ordered by producer and seq */
  list(): GapRow[] {
    return this.db.all<GapRow>('SELECT producer, from_seq, to_seq, detected_at FROM gaps ORDER BY producer, from_seq')
  }
}
