import { CID } from 'multiformats/cid'
import { base32 } from 'multiformats/bases/base32'
import { createHash } from 'node:crypto'
import { NotFoundError } from 'interface-store'
import type { Blockstore, InputPair, Pair } from 'interface-blockstore'
import type { AbortOptions } from '@libp2p/interface'
import { DataDirError } from '../errors.ts'
import { cidStringOfBytes } from '../util/cidString.ts'
import { BUSY_TIMEOUT_MS, openDatabase, type SqlDatabase, type SqlValue } from '../runtime/sqlite.ts'

/**
 * blocks.db's table. A rowid table, so blocks are stored in the order they come (the garbage collection
 * lists them by that position) and an insert appends its bytes instead of moving other blocks about. A
 * block is found by `k`, 48 bits of its CID's end (its digest's, for a hashed CID): not unique, the
 * CID's bytes decide. Inserts land at random places of any index on a hash, and each dirties a page of
 * it; an index of 6-byte integers has a third of the pages of one of the CID's 59-character strings.
 */
const table = (name: string): string => `CREATE TABLE ${name} (k INTEGER NOT NULL, cid BLOB NOT NULL, bytes BLOB NOT NULL)`
const INDEX = 'CREATE INDEX blocks_k ON blocks (k)'

/** Rows copied at a time when an older blocks.db is converted. */
const CONVERT_PAGE = 1000

/**
 * @returns whether a CID's bytes are of a form cairn writes: a CIDv0, or a CIDv1 of a raw or dag-pb block,
 * with a sha2-256 multihash. At most three CIDs of these forms share a digest.
 */
const isOwnForm = (cid: Uint8Array): boolean =>
  (cid.length === 36 && cid[0] === 0x01 && (cid[1] === 0x55 || cid[1] === 0x70) && cid[2] === 0x12 && cid[3] === 0x20) || (cid.length === 34 && cid[0] === 0x12 && cid[1] === 0x20)

/** @returns the last 6 bytes of `bytes` as a signed 48-bit integer, which SQLite stores in 6 bytes */
export function tailKey(bytes: Uint8Array): number {
  let k = 0
  for (let i = Math.max(0, bytes.length - 6); i < bytes.length; i++) k = k * 256 + bytes[i]
  return k - 2 ** 47
}

/**
 * blocks.db's application_id once its keys are blockKey's: a file whose keys were all the CID's last bytes
 * (a build of one day) has another, and its other CIDs are keyed again at the first start.
 */
const KEYED = 0x63726b32

/**
 * @returns the look-up key of a CID's bytes: the end of its digest for the forms cairn writes (isOwnForm),
 * the end of a SHA-256 of its bytes for any other. A CID's codec and multihash length are the linker's
 * choice and a hash check accepts any codec, so keyed by the digest alone one block could be stored under
 * as many CIDs as a member links, all on one key (every look-up of it would read them all).
 */
export function blockKey(cid: Uint8Array): number {
  return tailKey(isOwnForm(cid) ? cid : createHash('sha256').update(cid).digest())
}

/** @returns the bytes of a CID's text (`cidStringOfBytes`'s inverse) */
function cidBytes(text: string): Uint8Array {
  return text.startsWith('b') ? base32.decode(text) : CID.parse(text).bytes
}

/**
 * Opens (creating if needed) the SQLite file that holds IPFS blocks, converting a file written by an
 * earlier cairn (blocks keyed by their CID's string) in one durable transaction.
 * SQLite keeps the binary free of native addons and makes a group commit one fsync.
 *
 * @throws Error when the file is no SQLite database
 * @throws DataDirError when an older file cannot be converted (a key that is no CID, a full disk): it is left as it was
 */
export async function openBlockDatabase(path: string): Promise<SqlDatabase> {
  const db = await openDatabase(path)
  // auto_vacuum must be set before the first table (and before WAL) for garbage collection to shrink the file;
  // it waits for another connection's write, so the busy timeout comes first.
  db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}; PRAGMA auto_vacuum = INCREMENTAL; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL`)
  const format = blockFormat(db)
  if (format === 'none') {
    db.transaction(() => {
      if (blockFormat(db) === 'none') db.exec(`${table('blocks')}; ${INDEX}; PRAGMA application_id = ${KEYED}`)
    })
  } else if (format !== 'current') {
    convert(db, format)
  } else if (!keyed(db)) {
    rekey(db)
  }
  return db
}

/** @returns whether the file's keys are blockKey's (see KEYED) */
const keyed = (db: SqlDatabase): boolean => db.get<{ application_id: number }>('PRAGMA application_id')?.application_id === KEYED

/**
 * Keys again, in one durable transaction, the blocks of a file keyed by the CID's last bytes whose CIDs
 * are of no form cairn writes (see blockKey): few or none, found in one pass over the table.
 */
function rekey(db: SqlDatabase): void {
  try {
    rekeyRows(db)
  } catch (err) {
    throw new DataDirError(`Cannot key the blocks of ${db.path} again: ${(err as Error).message}; the file is left as it was: free some disk space (when it is full) and start again`)
  }
}

function rekeyRows(db: SqlDatabase): void {
  db.transaction(
    () => {
      if (keyed(db)) return
      for (let after = 0; ; ) {
        const rows = db.all<{ r: number; cid: Uint8Array }>(
          "SELECT rowid AS r, cid FROM blocks WHERE rowid > ? AND NOT ((length(cid) = 36 AND substr(cid, 1, 4) IN (x'01551220', x'01701220')) OR (length(cid) = 34 AND substr(cid, 1, 2) = x'1220')) ORDER BY rowid LIMIT ?",
          [after, CONVERT_PAGE]
        )
        for (const r of rows) db.run('UPDATE blocks SET k = ? WHERE rowid = ?', [blockKey(r.cid), r.r])
        if (rows.length < CONVERT_PAGE) break
        after = rows[rows.length - 1].r
      }
      db.exec(`PRAGMA application_id = ${KEYED}`)
    },
    { durable: true }
  )
}

/**
 * Opens blocks.db only to read it, from another process than the node's (a CLI verb), the node perhaps
 * running: nothing is written (no conversion of a file in an earlier format, read as it is: see
 * SqliteBlockstore), and nothing waits for the node's writes.
 *
 * @throws Error when the file is missing or no SQLite database
 */
export async function openBlockReader(path: string): Promise<SqliteBlockstore> {
  const db = await openDatabase(path, { readonly: true })
  try {
    db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`)
    return new SqliteBlockstore(db)
  } catch (err) {
    db.close()
    throw err
  }
}

/** What blocks.db's table is: none yet, this cairn's, or an earlier one keyed by the CID's string (with or without a rowid). */
function blockFormat(db: SqlDatabase): 'none' | 'current' | 'text' | 'text-without-rowid' {
  const columns = db.all<{ name: string }>('PRAGMA table_info(blocks)').map((c) => c.name)
  if (columns.length === 0) return 'none'
  if (columns.includes('k')) return 'current'
  const sql = db.get<{ sql: string }>("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'blocks'")?.sql ?? ''
  return /WITHOUT ROWID/i.test(sql) ? 'text-without-rowid' : 'text'
}

/**
 * Rewrites a table keyed by the CID's string into this cairn's, in one durable transaction (a crash
 * leaves the old table whole, and the next start converts it again); the old table's pages stay free
 * for the blocks that come next.
 */
function convert(db: SqlDatabase, format: 'text' | 'text-without-rowid'): void {
  // Paged in storage order (by the key where there is no rowid), so that a large file never sits in memory.
  const order = format === 'text' ? 'rowid' : 'cid'
  try {
    db.transaction(
      () => {
        if (blockFormat(db) === 'current') return
        db.exec(`DROP TABLE IF EXISTS blocks_new; ${table('blocks_new')}`)
        for (let after: SqlValue = format === 'text' ? 0 : ''; ; ) {
          const rows: Array<{ o: SqlValue; cid: string; bytes: Uint8Array }> = db.all(`SELECT ${order} AS o, cid, bytes FROM blocks WHERE ${order} > ? ORDER BY ${order} LIMIT ?`, [
            after,
            CONVERT_PAGE
          ])
          for (const r of rows) {
            let cid: CID
            try {
              cid = CID.parse(r.cid)
            } catch (err) {
              throw new DataDirError(
                `Cannot convert ${db.path}: a block is stored under "${r.cid.slice(0, 80)}", which is no CID (${(err as Error).message}); the file is left as it was: restore it and cairn.db from the same backup (docs/operations.md, "Backups")`
              )
            }
            db.run('INSERT INTO blocks_new (k, cid, bytes) VALUES (?, ?, ?)', [blockKey(cid.bytes), cid.bytes, r.bytes])
          }
          if (rows.length < CONVERT_PAGE) break
          after = rows[rows.length - 1].o
        }
        db.exec(`DROP TABLE blocks; ALTER TABLE blocks_new RENAME TO blocks; ${INDEX}; PRAGMA application_id = ${KEYED}`)
      },
      { durable: true }
    )
  } catch (err) {
    if ((err as Error).name === 'DataDirError') throw err
    throw new DataDirError(
      `Cannot convert ${db.path} to this cairn's format: ${(err as Error).message}; the file is left as it was: give it room for two more copies of its blocks (when the disk is full) and start again`
    )
  }
  db.exec('PRAGMA wal_checkpoint(TRUNCATE)')
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

/** A block to store: its CID and bytes. */
export interface StoredBlock {
  cid: CID
  bytes: Uint8Array
}

/**
 * A Blockstore (interface-blockstore) over one SQLite table. A file an earlier cairn wrote (blocks keyed by
 * their CID's string) that `openBlockDatabase` has not converted yet, opened by another process with
 * `openBlockReader` (`cairn doctor`, `cairn export`), is read as it is; writing to it throws.
 */
export class SqliteBlockstore implements Blockstore {
  readonly db: SqlDatabase
  /** the table's key where a CID is looked up, and its parameters */
  private where!: string
  private params!: (cid: CID) => SqlValue[]
  /** the CID of a row's `cid` column, and its string */
  private rowCid!: (v: Uint8Array | string) => CID
  private rowString!: (v: Uint8Array | string) => string
  /** the parameters of a look-up by a CID's string */
  private stringParams!: (cid: string) => SqlValue[]
  private legacy = false
  /** the key of a CID's bytes in this file: blockKey, or the CID's last bytes in a file not keyed again yet (read by a CLI verb) */
  private key: (cid: Uint8Array) => number = blockKey

  constructor(db: SqlDatabase) {
    this.db = db
    this.readFormat()
  }

  /**
   * Reads the table in the format the file has now: a reader of an unconverted file (`cairn doctor`) may
   * see a node convert it while it runs.
   */
  private readFormat(): void {
    this.legacy = blockFormat(this.db).startsWith('text')
    if (this.legacy) {
      this.where = 'cid = ?'
      this.params = (cid) => [cid.toString()]
      this.rowCid = (v) => CID.parse(v as string)
      this.rowString = (v) => v as string
      this.stringParams = (cid) => [cid]
    } else {
      const key = keyed(this.db) ? blockKey : tailKey
      this.key = key
      this.where = 'k = ? AND cid = ?'
      this.params = (cid) => [key(cid.bytes), cid.bytes]
      this.rowCid = (v) => CID.decode(v as Uint8Array)
      this.rowString = (v) => cidStringOfBytes(v as Uint8Array)
      this.stringParams = (cid) => {
        const bytes = cidBytes(cid)
        return [key(bytes), bytes]
      }
    }
  }

  has(cid: CID): boolean {
    return this.db.get(`SELECT 1 AS x FROM blocks WHERE ${this.where}`, this.params(cid)) != null
  }

  async put(cid: CID, bytes: InputPair['bytes']): Promise<CID> {
    this.putSync(cid, await collect(bytes))
    return cid
  }

  /** Stores a block at once; inside a caller's transaction it commits with it. */
  putSync(cid: CID, bytes: Uint8Array): void {
    this.putAll([{ cid, bytes }])
  }

  /**
   * Stores blocks in one transaction (a savepoint of a caller's); `durable` syncs it, and with it every
   * block written before.
   *
   * @throws Error when the file is in an earlier cairn's format (opened without `openBlockDatabase`)
   */
  putAll(blocks: Iterable<StoredBlock>, options: { durable?: boolean } = {}): void {
    if (this.legacy) throw new Error(`Cannot write to ${this.db.path}: it is in an earlier cairn's format; start cairn on this data directory once to convert it`)
    this.db.transaction(() => {
      for (const { cid, bytes } of blocks) {
        const key = cid.bytes
        const k = this.key(key)
        // Two statements, not INSERT … WHERE NOT EXISTS: the look-up and the insert are atomic in the
        // transaction, and the pair costs less than SQLite's plan for the one.
        if (this.db.get('SELECT 1 AS x FROM blocks WHERE k = ? AND cid = ?', [k, key]) == null) this.db.run('INSERT INTO blocks (k, cid, bytes) VALUES (?, ?, ?)', [k, key, bytes])
        if (this.trackers.size > 0) {
          const s = cid.toString()
          for (const t of this.trackers) t.add(s)
        }
      }
    }, options)
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
    return this.db.get<{ bytes: Uint8Array }>(`SELECT bytes FROM blocks WHERE ${this.where}`, this.params(cid))?.bytes
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
    for (const row of this.db.all<{ cid: Uint8Array | string; bytes: Uint8Array }>('SELECT cid, bytes FROM blocks')) {
      yield {
        cid: this.rowCid(row.cid),
        bytes: (function* () {
          yield row.bytes
        })()
      }
    }
  }

  delete(cid: CID): void {
    this.remove([cid.toString()])
  }

  async *deleteMany(source: Iterable<CID> | AsyncIterable<CID>): AsyncGenerator<CID> {
    for await (const cid of source) {
      this.delete(cid)
      yield cid
    }
  }

  /** @returns every block's CID and size */
  sizes(): Array<{ cid: string; size: number }> {
    return this.db.all<{ cid: Uint8Array | string; size: number }>('SELECT cid, length(bytes) AS size FROM blocks').map((r) => ({ cid: this.rowString(r.cid), size: r.size }))
  }

  /**
   * One page of every block's CID and size, in storage order, up to position `through`: pass the last
   * page's `next` to get the one after it, until `next` is undefined.
   */
  sizesPage(after: number, limit: number, through: number): { rows: Array<{ cid: string; size: number }>; next?: number } {
    const rows = this.db.all<{ r: number; cid: Uint8Array | string; size: number }>('SELECT rowid AS r, cid, length(bytes) AS size FROM blocks WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?', [
      after,
      through,
      limit
    ])
    return { rows: rows.map((r) => ({ cid: this.rowString(r.cid), size: r.size })), next: rows.length < limit ? undefined : rows[rows.length - 1].r }
  }

  /** @returns the highest storage position so far: pass it as `through` to sizesPage to list no block stored later */
  lastPosition(): number {
    return this.db.get<{ r: number | null }>('SELECT max(rowid) AS r FROM blocks')?.r ?? 0
  }

  /** @returns how many blocks are stored */
  count(): number {
    return this.db.get<{ n: number }>('SELECT count(*) AS n FROM blocks')?.n ?? 0
  }

  /**
   * Deletes blocks by CID, in one transaction.
   *
   * @throws Error when a string is no CID's text
   */
  remove(cids: readonly string[]): void {
    this.db.transaction(() => {
      for (const cid of cids) this.db.run(`DELETE FROM blocks WHERE ${this.where}`, this.stringParams(cid))
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
    // A node may have converted the file since this connection opened it: the snapshot's format is read.
    this.readFormat()
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
