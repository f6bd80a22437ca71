import type { SqlDatabase } from '../runtime/sqlite.ts'

/** How many of the roots this node signed heads of are remembered (`signed_roots`, ~8 MiB at most). */
export const SIGNED_ROOTS = 65_536

/** A row of `outbox`: one event file this node published, where it sits in the tree, and whether it was pruned. */
export interface OutboxFile {
  seq: number
  event_id: string
  /** the hour bucket, `yyyy-mm-dd/hh` */
  bucket: string
  name: string
  cid: string
  size: number
  created_at: number
  /** the idempotency key it was published under (null: none) */
  idempotency_key?: string | null
  /** the hash of the request that published it */
  request_hash?: string | null
}

/** A row of `outbox_dirs`: one directory of the own outbox tree ('' is the root). */
export interface OutboxDir {
  path: string
  cid: string
  size: number
}

/**
 * The `outbox` and `outbox_dirs` tables: this node's own event files, and the directories of the tree that
 * its head points at. They change only together with the signed head, in one transaction.
 */
export class OutboxTable {
  private readonly db: SqlDatabase

  constructor(db: SqlDatabase) {
    this.db = db
  }

  /** @returns the last seq this node produced (0 before the first) */
  lastSeq(): number {
    return this.db.get<{ s: number | null }>('SELECT max(seq) AS s FROM outbox')?.s ?? 0
  }

  /**
   * @returns the file this node published under an idempotency key (pruned or not): by the key it was
   * published with, or, for a key that is an event_id, the event published with that id before keys were kept.
   * Never a withdrawn one (`markWithdrawn`): no peer takes it, and its key went to the republish file's request.
   */
  byIdempotencyKey(key: string): { event_id: string; seq: number; cid: string; request_hash: string | null } | undefined {
    return (
      this.db.get<{ event_id: string; seq: number; cid: string; request_hash: string | null }>('SELECT event_id, seq, cid, request_hash FROM outbox WHERE idempotency_key = ?', [key]) ??
      this.db.get<{ event_id: string; seq: number; cid: string; request_hash: string | null }>(
        'SELECT event_id, seq, cid, request_hash FROM outbox WHERE event_id = ? AND withdrawn = 0 ORDER BY seq DESC LIMIT 1',
        [key]
      )
    )
  }

  /** Records a new event file. */
  insert(f: OutboxFile): void {
    this.db.run('INSERT INTO outbox (seq, event_id, bucket, name, cid, size, created_at, idempotency_key, request_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)', [
      f.seq,
      f.event_id,
      f.bucket,
      f.name,
      f.cid,
      f.size,
      f.created_at,
      f.idempotency_key ?? null,
      f.request_hash ?? null
    ])
  }

  /** @returns the unpruned files of an hour bucket */
  bucketFiles(bucket: string): Array<{ name: string; cid: string; size: number }> {
    return this.db.all<{ name: string; cid: string; size: number }>('SELECT name, cid, size FROM outbox WHERE bucket = ? AND pruned_at IS NULL', [bucket])
  }

  /** @returns the unpruned files after `seq`, by seq */
  unprunedAfter(seq: number): Array<{ seq: number; bucket: string; name: string; cid: string; size: number }> {
    return this.db.all<{ seq: number; bucket: string; name: string; cid: string; size: number }>('SELECT seq, bucket, name, cid, size FROM outbox WHERE seq > ? AND pruned_at IS NULL ORDER BY seq', [
      seq
    ])
  }

  /** @returns up to `limit` unpruned files below `seq`, the highest first, with the key and request hash each was published under */
  unprunedBelow(seq: number, limit: number): Array<{ seq: number; event_id: string; cid: string; idempotency_key: string | null; request_hash: string | null }> {
    return this.db.all<{ seq: number; event_id: string; cid: string; idempotency_key: string | null; request_hash: string | null }>(
      'SELECT seq, event_id, cid, idempotency_key, request_hash FROM outbox WHERE seq < ? AND pruned_at IS NULL ORDER BY seq DESC LIMIT ?',
      [seq, limit]
    )
  }

  /** @returns how many unpruned files an hour bucket holds */
  bucketCount(bucket: string): number {
    return this.db.get<{ n: number }>('SELECT count(*) AS n FROM outbox WHERE bucket = ? AND pruned_at IS NULL', [bucket])?.n ?? 0
  }

  /** Records that this node signed a head of `root`; only the last SIGNED_ROOTS are kept. */
  signed(root: string): void {
    const n = Number(this.db.run('INSERT INTO signed_roots (root) VALUES (?)', [root]).lastInsertRowid)
    this.db.run('DELETE FROM signed_roots WHERE n = ?', [n - SIGNED_ROOTS])
  }

  /** @returns whether `root` is among the last SIGNED_ROOTS roots this node signed a head of */
  hasSigned(root: string): boolean {
    return this.db.get<{ found: number }>('SELECT 1 AS found FROM signed_roots WHERE root = ? LIMIT 1', [root]) != null
  }

  /** @returns the file this node published at `seq`, pruned or not, or undefined when it has no row for it */
  atSeq(seq: number): { bucket: string; name: string; cid: string } | undefined {
    return this.db.get<{ bucket: string; name: string; cid: string }>('SELECT bucket, name, cid FROM outbox WHERE seq = ?', [seq])
  }

  /** @returns where an unpruned file sits, or undefined when there is no such seq or it was pruned */
  unpruned(seq: number): { seq: number; bucket: string; name: string } | undefined {
    return this.db.get<{ seq: number; bucket: string; name: string }>('SELECT seq, bucket, name FROM outbox WHERE seq = ? AND pruned_at IS NULL', [seq])
  }

  /** @returns the unpruned files created before `time` (ms), by seq */
  unprunedBefore(time: number): Array<{ seq: number; created_at: number; bucket: string }> {
    return this.db.all<{ seq: number; created_at: number; bucket: string }>('SELECT seq, created_at, bucket FROM outbox WHERE pruned_at IS NULL AND created_at < ? ORDER BY seq', [time])
  }

  /** Marks a file as pruned at `time` (ms): it left the tree, its row stays; `compacted` when newer events superseded it. */
  markPruned(seq: number, time: number, compacted = false): void {
    this.db.run('UPDATE outbox SET pruned_at = ?, compacted = ? WHERE seq = ?', [time, compacted ? 1 : 0, seq])
  }

  /**
   * Marks a file as withdrawn at `time` (ms) by `cairn reclock`: pruned as by plain retention (its seq is in the
   * head's `pruned_plain`), and its idempotency key freed: the republish file holds the request under that key,
   * so that whichever of the file's publish and a backend's retry comes first publishes it again, stamped
   * right, and the other is answered with that event. Its event_id stays, for the record, and answers no key.
   */
  markWithdrawn(seq: number, time: number): void {
    this.db.run('UPDATE outbox SET pruned_at = ?, compacted = 0, withdrawn = 1, idempotency_key = NULL WHERE seq = ?', [time, seq])
  }

  /** @returns the highest seq pruned without being superseded (plain retention), 0 when none was: what heads say as `pruned_plain` */
  prunedPlainThrough(): number {
    return this.db.get<{ s: number | null }>('SELECT max(seq) AS s FROM outbox WHERE pruned_at IS NOT NULL AND compacted = 0')?.s ?? 0
  }

  /** @returns how many files were pruned as superseded (compacted) */
  compactedCount(): number {
    return this.db.get<{ n: number }>('SELECT count(*) AS n FROM outbox WHERE pruned_at IS NOT NULL AND compacted = 1')?.n ?? 0
  }

  /** @returns how many files the tree holds, the oldest of their seqs, and the last seq ever produced */
  counts(): { files: number; oldestSeq: number | null; lastSeq: number } {
    const r = this.db.get<{ files: number; oldest: number | null }>('SELECT count(*) AS files, min(seq) AS oldest FROM outbox WHERE pruned_at IS NULL')
    return { files: r?.files ?? 0, oldestSeq: r?.oldest ?? null, lastSeq: this.lastSeq() }
  }

  /** @returns every directory of the own tree */
  dirs(): OutboxDir[] {
    return this.db.all<OutboxDir>('SELECT path, cid, size FROM outbox_dirs')
  }

  /** @returns the CID of the own tree's root, or undefined before the first head */
  root(): string | undefined {
    return this.db.get<{ cid: string }>("SELECT cid FROM outbox_dirs WHERE path = ''")?.cid
  }

  /** Records a directory of the own tree, or removes it (`dir` undefined). */
  putDir(path: string, dir: { cid: string; size: number } | undefined): void {
    if (dir == null) this.db.run('DELETE FROM outbox_dirs WHERE path = ?', [path])
    else this.db.run('INSERT INTO outbox_dirs (path, cid, size) VALUES (?, ?, ?) ON CONFLICT (path) DO UPDATE SET cid = excluded.cid, size = excluded.size', [path, dir.cid, dir.size])
  }
}
