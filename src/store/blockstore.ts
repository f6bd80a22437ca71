import { CID } from 'multiformats/cid'
import { NotFoundError } from 'interface-store'
import type { Blockstore, InputPair, Pair } from 'interface-blockstore'
import type { AbortOptions } from '@libp2p/interface'
import { openDatabase, type SqlDatabase } from '../runtime/sqlite.ts'

/** How long a write waits for another connection's write to finish. */
const BUSY_TIMEOUT_MS = 5000

/**
 * Opens (creating if needed) the SQLite file that holds IPFS blocks.
 * SQLite keeps the binary free of native addons and makes a group commit one fsync.
 */
export async function openBlockDatabase(path: string): Promise<SqlDatabase> {
  const db = await openDatabase(path)
  // auto_vacuum must be set before the first table (and before WAL) for garbage collection to shrink the file.
  // A rowid table: blocks are up to 256 KiB, and a WITHOUT ROWID table keeps whole rows in its B-tree,
  // so every insert moved kilobytes around (it was most of a publish's CPU).
  db.exec(`PRAGMA auto_vacuum = INCREMENTAL; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS};
    CREATE TABLE IF NOT EXISTS blocks (cid TEXT PRIMARY KEY, bytes BLOB NOT NULL)`)
  const sql = db.get<{ sql: string }>("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'blocks'")?.sql ?? ''
  if (/WITHOUT ROWID/i.test(sql)) {
    db.transaction(
      () => {
        db.exec(`CREATE TABLE blocks_rowid (cid TEXT PRIMARY KEY, bytes BLOB NOT NULL);
        INSERT INTO blocks_rowid (cid, bytes) SELECT cid, bytes FROM blocks;
        DROP TABLE blocks;
        ALTER TABLE blocks_rowid RENAME TO blocks`)
      },
      { durable: true }
    )
  }
  return db
}

/** @returns a block's bytes in one array, however they come (one array, or the parts of a stream) */
export async function collect(bytes: InputPair['bytes']): Promise<Uint8Array> {
  if (bytes instanceof Uint8Array) return bytes
  const parts: Uint8Array[] = []
  for await (const b of bytes) parts.push(b)
  if (parts.length === 1) return parts[0]
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

/** A Blockstore (interface-blockstore) over one SQLite table. */
export class SqliteBlockstore implements Blockstore {
  readonly db: SqlDatabase

  constructor(db: SqlDatabase) {
    this.db = db
  }

  has(cid: CID): boolean {
    return this.db.get('SELECT 1 AS x FROM blocks WHERE cid = ?', [cid.toString()]) != null
  }

  async put(cid: CID, bytes: InputPair['bytes']): Promise<CID> {
    this.putSync(cid, await collect(bytes))
    return cid
  }

  /** Stores a block at once; inside a caller's transaction it commits with it. */
  putSync(cid: CID, bytes: Uint8Array): void {
    const key = cid.toString()
    this.db.run('INSERT OR IGNORE INTO blocks (cid, bytes) VALUES (?, ?)', [key, bytes])
    for (const t of this.trackers) t.add(key)
  }

  private readonly trackers = new Set<PutTracker>()

  /**
   * Records the CID of every block put from now on, stored before or not, until `stop()`: what a garbage
   * collection under way must not delete, however its marking saw the block. At most `limit` CIDs are
   * kept; past them the record says only that it is `full`. `onPut` is told of every put, recorded or not.
   */
  track(limit: number, onPut?: (cid: string) => void): PutTracker {
    const tracker = new PutTracker(limit, (t) => this.trackers.delete(t), onPut)
    this.trackers.add(tracker)
    return tracker
  }

  async *putMany(source: Iterable<InputPair> | AsyncIterable<InputPair>): AsyncGenerator<CID> {
    for await (const { cid, bytes } of source) {
      yield await this.put(cid, bytes)
    }
  }

  /** @returns the block's bytes, or undefined */
  getSync(cid: CID): Uint8Array | undefined {
    return this.db.get<{ bytes: Uint8Array }>('SELECT bytes FROM blocks WHERE cid = ?', [cid.toString()])?.bytes
  }

  *get(cid: CID, _options?: AbortOptions): Generator<Uint8Array> {
    const bytes = this.getSync(cid)
    if (bytes == null) throw new NotFoundError(`Block ${cid.toString()} not found`)
    yield bytes
  }

  *getMany(source: Iterable<CID> | AsyncIterable<CID>): Generator<Pair> {
    for (const cid of source as Iterable<CID>) {
      yield { cid, bytes: this.get(cid) }
    }
  }

  *getAll(): Generator<Pair> {
    for (const row of this.db.all<{ cid: string; bytes: Uint8Array }>('SELECT cid, bytes FROM blocks')) {
      yield {
        cid: CID.parse(row.cid),
        bytes: (function* () {
          yield row.bytes
        })()
      }
    }
  }

  delete(cid: CID): void {
    this.db.run('DELETE FROM blocks WHERE cid = ?', [cid.toString()])
  }

  async *deleteMany(source: Iterable<CID> | AsyncIterable<CID>): AsyncGenerator<CID> {
    for await (const cid of source) {
      this.delete(cid)
      yield cid
    }
  }

  /** @returns every block's CID and size */
  sizes(): Array<{ cid: string; size: number }> {
    return this.db.all<{ cid: string; size: number }>('SELECT cid, length(bytes) AS size FROM blocks')
  }

  /**
   * One page of every block's CID and size, in storage order, up to position `through`: pass the last
   * page's `next` to get the one after it, until `next` is undefined.
   */
  sizesPage(after: number, limit: number, through: number): { rows: Array<{ cid: string; size: number }>; next?: number } {
    const rows = this.db.all<{ r: number; cid: string; size: number }>('SELECT rowid AS r, cid, length(bytes) AS size FROM blocks WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?', [
      after,
      through,
      limit
    ])
    return { rows: rows.map((r) => ({ cid: r.cid, size: r.size })), next: rows.length < limit ? undefined : rows[rows.length - 1].r }
  }

  /** @returns the highest storage position so far: pass it as `through` to sizesPage to list no block stored later */
  lastPosition(): number {
    return this.db.get<{ r: number | null }>('SELECT max(rowid) AS r FROM blocks')?.r ?? 0
  }

  /** @returns how many blocks are stored */
  count(): number {
    return this.db.get<{ n: number }>('SELECT count(*) AS n FROM blocks')?.n ?? 0
  }

  /** Deletes blocks by CID, in one transaction. */
  remove(cids: readonly string[]): void {
    this.db.transaction(() => {
      for (const cid of cids) this.db.run('DELETE FROM blocks WHERE cid = ?', [cid])
    })
  }

  /**
   * Makes every block written so far durable, whether its transaction was durable or not (WAL frames
   * reach the disk in order, so one sync covers all earlier transactions). A passive checkpoint syncs the
   * WAL before it copies it into the database file (synchronous = NORMAL); when a reader in another
   * process keeps it from copying everything, a durable write syncs the WAL instead.
   */
  sync(): void {
    const r = this.db.get<{ log: number; checkpointed: number }>('PRAGMA wal_checkpoint(PASSIVE)')
    if (r == null || r.checkpointed === r.log) return
    this.db.transaction(
      () => {
        const v = this.db.get<{ user_version: number }>('PRAGMA user_version')?.user_version ?? 0
        this.db.exec(`PRAGMA user_version = ${(v + 1) % 0x7fffffff}`)
      },
      { durable: true }
    )
  }

  /**
   * Gives up to `pages` free pages (those of deleted blocks) back to the file system.
   *
   * @returns how many free pages are left
   */
  vacuumSome(pages: number): number {
    this.db.exec(`PRAGMA incremental_vacuum(${Math.max(1, Math.floor(pages))})`)
    return this.freePages()
  }

  /** @returns how many pages of the file are free (left by deleted blocks) */
  freePages(): number {
    return this.db.get<{ freelist_count: number }>('PRAGMA freelist_count')?.freelist_count ?? 0
  }

  /** @returns how many pages the file has, free ones included */
  pages(): number {
    return this.db.get<{ page_count: number }>('PRAGMA page_count')?.page_count ?? 0
  }

  /**
   * Copies the WAL into the database file and truncates it, as far as no reader holds an older snapshot:
   * it never waits for one (a CLI verb reading in another process would otherwise hold the node for the
   * whole busy timeout); what stays is copied by a later checkpoint.
   */
  truncateWal(): void {
    this.db.exec('PRAGMA busy_timeout = 0')
    try {
      this.db.get('PRAGMA wal_checkpoint(TRUNCATE)')
    } finally {
      this.db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`)
    }
  }

  /**
   * Reads from one snapshot of blocks.db until `end()`: what another process deletes meanwhile (the node's
   * garbage collection) stays visible to this connection. Only for a connection of a reader of its own (a
   * CLI verb): while it is held, the writer cannot truncate the WAL.
   */
  readSnapshot(): { end(): void } {
    this.db.exec('BEGIN')
    // A deferred transaction takes its snapshot at its first read.
    this.db.get('SELECT 1 AS x FROM blocks LIMIT 1')
    return { end: () => this.db.exec('COMMIT') }
  }

  /** @returns SQLite's integrity check of the block database: 'ok', or what is damaged */
  integrity(): string | undefined {
    return this.db.get<{ integrity_check: string }>('PRAGMA integrity_check')?.integrity_check
  }

  /**
   * Reads the table's index once, so that a damaged or foreign file fails at open, not mid-sync.
   *
   * @throws Error when the file is not a block database
   */
  check(): void {
    this.db.get('SELECT count(*) FROM blocks')
  }

  /** @returns the number of blocks and their total size */
  stats(): { blocks: number; bytes: number } {
    const r = this.db.get<{ n: number; b: number | null }>('SELECT count(*) AS n, sum(length(bytes)) AS b FROM blocks')
    return { blocks: r?.n ?? 0, bytes: r?.b ?? 0 }
  }
}

/** The CIDs of the blocks put since `SqliteBlockstore.track`, up to a limit. */
export class PutTracker {
  private readonly puts = new Set<string>()
  private readonly limit: number
  private readonly onStop: (t: PutTracker) => void
  private readonly onPut: ((cid: string) => void) | undefined
  /** more than `limit` blocks were put: the record is incomplete */
  full = false

  constructor(limit: number, onStop: (t: PutTracker) => void, onPut?: (cid: string) => void) {
    this.limit = limit
    this.onStop = onStop
    this.onPut = onPut
  }

  add(cid: string): void {
    this.onPut?.(cid)
    if (this.puts.size < this.limit) this.puts.add(cid)
    else if (!this.puts.has(cid)) this.full = true
  }

  has(cid: string): boolean {
    return this.puts.has(cid)
  }

  /** Ends the recording. */
  stop(): void {
    this.onStop(this)
  }
}
