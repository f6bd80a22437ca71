import type { SqlDatabase } from '../runtime/sqlite.ts'
import { clip } from '../util/clip.ts'

/** A row of `producers`: what this node knows of one producer's head and how far it processed it. */
export interface ProducerRow {
  producer: string
  head_seq: number
  head_root: string | null
  head_hlc: string | null
  head_message: Uint8Array | null
  head_received_at: number | null
  /** JSON: the producer's acks, per producer the seq it has processed */
  acks: string
  synced_root: string | null
  processed_seq: number
  /** the seq up to which the tree's directories were last walked whole (`remote_dirs` holds them) */
  synced_seq: number
  last_error: string | null
  /** the highest seq the producer's head says it pruned without newer events superseding it; null: the head does not say */
  pruned_plain: number | null
  /** the producer's head seq when this node first heard of it: what was pruned up to it is history before this node joined */
  joined_seq: number | null
  /** the head's count of files compacted out of the tree so far; null: the head does not say */
  head_compacted: number | null
  /** `head_compacted` of the head whose tree was last walked whole */
  synced_compacted: number
}

/** A signed head as stored: the fields a walk and the head exchange need, and the signed bytes. */
export interface StoredHead {
  producer: string
  seq: number
  root: string
  hlc: string
  acks: Record<string, number>
  signed: Uint8Array
  receivedAt: number
  /** the head's `pruned_plain`, when it has one */
  prunedPlain?: number
  /** the head's `compacted`, when it has one */
  compacted?: number
}

/**
 * The `producers` table: per producer, the newest head accepted, what this node walked (`synced_root`)
 * and processed (`processed_seq`), and the last sync error. This node's own row is its outbox head.
 */
export class ProducersTable {
  private readonly db: SqlDatabase
  /**
   * Writes to the table through this object so far (every row it changes goes through it): a row read
   * while this count stays the same is still the row (see sync/headIntake.ts producerRow).
   */
  writes = 0

  constructor(db: SqlDatabase) {
    this.db = db
  }

  /** @returns a producer's row, or undefined */
  get(producer: string): ProducerRow | undefined {
    return this.db.get<ProducerRow>('SELECT * FROM producers WHERE producer = ?', [producer])
  }

  /** @returns how many producers this node tracks (its own row included) */
  count(): number {
    return this.db.get<{ n: number }>('SELECT count(*) AS n FROM producers')?.n ?? 0
  }

  /** @returns whether this node tracks `producer` */
  has(producer: string): boolean {
    return this.db.get<{ one: number }>('SELECT 1 AS one FROM producers WHERE producer = ?', [producer]) != null
  }

  /** @returns every row, ordered by producer */
  all(): ProducerRow[] {
    return this.db.all<ProducerRow>('SELECT * FROM producers ORDER BY producer')
  }

  /**
   * Records a head as the producer's newest. With `synced`, this node also holds that root whole and has
   * processed up to `processedSeq` (its own outbox head).
   */
  putHead(head: StoredHead, synced?: { root: string; processedSeq: number }): void {
    this.writes++
    if (synced == null) {
      this.db.run(
        `INSERT INTO producers (producer, head_seq, head_root, head_hlc, head_message, head_received_at, acks, pruned_plain, joined_seq, head_compacted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
              ON CONFLICT (producer) DO UPDATE SET head_seq = excluded.head_seq, head_root = excluded.head_root, head_hlc = excluded.head_hlc,
                head_message = excluded.head_message, head_received_at = excluded.head_received_at, acks = excluded.acks,
                pruned_plain = excluded.pruned_plain, joined_seq = coalesce(producers.joined_seq, excluded.joined_seq), head_compacted = excluded.head_compacted`,
        [head.producer, head.seq, head.root, head.hlc, head.signed, head.receivedAt, JSON.stringify(head.acks), head.prunedPlain ?? null, head.seq, head.compacted ?? null]
      )
      return
    }
    this.db.run(
      `INSERT INTO producers (producer, head_seq, head_root, head_hlc, head_message, head_received_at, acks, synced_root, processed_seq)
              VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
              ON CONFLICT (producer) DO UPDATE SET head_seq = excluded.head_seq, head_root = excluded.head_root, head_hlc = excluded.head_hlc,
                head_message = excluded.head_message, head_received_at = excluded.head_received_at, acks = excluded.acks,
                synced_root = excluded.synced_root, processed_seq = excluded.processed_seq`,
      [head.producer, head.seq, head.root, head.hlc, head.signed, head.receivedAt, JSON.stringify(head.acks), synced.root, synced.processedSeq]
    )
  }

  /** @returns the signed heads this node knows, its own included, ordered by producer */
  signedHeads(): Uint8Array[] {
    return this.db.all<{ head_message: Uint8Array }>('SELECT head_message FROM producers WHERE head_message IS NOT NULL ORDER BY producer').map((r) => r.head_message)
  }

  /** @returns the producers other than `self` whose head is ahead of what was walked or processed */
  behind(self: string): string[] {
    return this.db
      .all<{ producer: string }>('SELECT producer FROM producers WHERE producer != ? AND head_root IS NOT NULL AND (synced_root IS NULL OR synced_root != head_root OR processed_seq < head_seq)', [
        self
      ])
      .map((r) => r.producer)
  }

  /** @returns per producer, the highest contiguous seq this node has walked and ingested */
  processed(): Record<string, number> {
    const out: Record<string, number> = {}
    for (const r of this.db.all<{ producer: string; processed_seq: number }>('SELECT producer, processed_seq FROM producers')) out[r.producer] = r.processed_seq
    return out
  }

  /** @returns the roots this node holds whole, per producer, ordered by producer */
  syncedRoots(): Array<{ producer: string; root: string }> {
    return this.db.all<{ producer: string; root: string }>('SELECT producer, synced_root AS root FROM producers WHERE synced_root IS NOT NULL ORDER BY producer')
  }

  /** @returns every root a producer row points at (synced and head), for garbage collection */
  roots(): string[] {
    const out = new Set<string>()
    for (const r of this.db.all<{ synced_root: string | null; head_root: string | null }>('SELECT synced_root, head_root FROM producers')) {
      if (r.synced_root != null) out.add(r.synced_root)
      if (r.head_root != null) out.add(r.head_root)
    }
    return [...out]
  }

  /**
   * Records that a walk processed `producer` up to `top` (never moving back) and clears its error; with
   * `synced`, the walk of that root (whose head said it had compacted `compacted` files) is complete.
   */
  advance(producer: string, top: number, synced?: { root: string; compacted: number }): void {
    this.writes++
    const whole = synced != null ? 1 : 0
    this.db.run(
      `UPDATE producers SET processed_seq = max(processed_seq, ?), synced_root = CASE WHEN ? THEN ? ELSE synced_root END,
         synced_seq = CASE WHEN ? THEN ? ELSE synced_seq END, synced_compacted = CASE WHEN ? THEN ? ELSE synced_compacted END, last_error = NULL WHERE producer = ?`,
      [top, whole, synced?.root ?? null, whole, top, whole, synced?.compacted ?? 0, producer]
    )
  }

  /** Records why the last sync of a producer failed (cut to CLIP_TEXT characters: it may quote the producer's names). */
  setError(producer: string, error: string | null): void {
    this.writes++
    this.db.run('UPDATE producers SET last_error = ? WHERE producer = ?', [error == null ? null : clip(error), producer])
  }
}
