import type { SqlDatabase } from '../runtime/sqlite.ts'
import { CLIP_TEXT, clip } from '../util/clip.ts'

/** A file or directory of a producer's tree that was refused, and why. */
export interface QuarantineEntry {
  producer: string
  path: string
  cid: string | null
  reason: string
  detail: string
  detected_at: number
}

/**
 * The most entries kept per producer, the newest: a member that writes refused files without end (each
 * new path a row) must not grow the table, nor the status that counts it, without end. Its newest entry of
 * each reason is kept besides (the reasons are a closed set: `Rejection['reason']`), so a flood of one
 * reason (junk names) does not wipe the evidence of another (a reserved type, `reserved_type`).
 * Every refusal is counted in `cairn_rejected_total` whether its row is kept or not.
 */
export const QUARANTINE_KEEP = 1000

/** The `quarantine` table: what a walk refused (bad names, oversized or invalid files, policy), once per producer and path. */
export class QuarantineTable {
  private readonly db: SqlDatabase

  constructor(db: SqlDatabase) {
    this.db = db
  }

  /**
   * Records a refused entry, its path and detail cut to CLIP_TEXT characters and its CID left out
   * when longer (an identity CID's digest is its block, as long as a member likes; a cut CID names nothing);
   * one already recorded is left as it is.
   */
  add(e: QuarantineEntry): void {
    const cid = e.cid != null && e.cid.length <= CLIP_TEXT ? e.cid : null
    this.db.run('INSERT OR IGNORE INTO quarantine (producer, path, cid, reason, detail, detected_at) VALUES (?, ?, ?, ?, ?, ?)', [
      e.producer,
      clip(e.path),
      cid,
      e.reason,
      clip(e.detail),
      e.detected_at
    ])
  }

  /**
   * Deletes `producer`'s entries beyond the newest `keep` (after adding some), except its newest of each
   * reason: at most `keep` + one per reason stay.
   *
   * @returns how many went
   */
  trim(producer: string, keep = QUARANTINE_KEEP): number {
    return this.db.run(
      `DELETE FROM quarantine WHERE producer = ?
         AND id < (SELECT id FROM quarantine WHERE producer = ? ORDER BY id DESC LIMIT 1 OFFSET ?)
         AND id NOT IN (SELECT max(id) FROM quarantine WHERE producer = ? GROUP BY reason)`,
      [producer, producer, keep - 1, producer]
    ).changes
  }

  /** @returns per reason, how many entries are quarantined */
  countsByReason(): Record<string, number> {
    const out: Record<string, number> = {}
    for (const r of this.db.all<{ reason: string; n: number }>('SELECT reason, count(*) AS n FROM quarantine GROUP BY reason')) out[r.reason] = r.n
    return out
  }

  /** @returns the `limit` most recently quarantined entries, newest first */
  recent(limit = 20): Array<Omit<QuarantineEntry, 'cid'>> {
    return this.db.all<Omit<QuarantineEntry, 'cid'>>('SELECT producer, path, reason, detail, detected_at FROM quarantine ORDER BY id DESC LIMIT ?', [limit])
  }
}
