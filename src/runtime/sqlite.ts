import { existsSync, realpathSync } from 'node:fs'
import { runtimeName } from './runtime.ts'
import { TransactionRolledBackError } from '../errors.ts'

/** A value SQLite can bind as a parameter. */
export type SqlValue = string | number | bigint | null | Uint8Array | boolean

/** The result of a write statement. */
export interface RunResult {
  changes: number
  lastInsertRowid: number | bigint
}

/**
 * The small synchronous SQLite surface cairn needs, the same on `bun:sqlite` and `node:sqlite`.
 * Statements are prepared once per SQL string and cached.
 */
export interface SqlDatabase {
  readonly path: string
  run(sql: string, params?: readonly SqlValue[]): RunResult
  get<T = Record<string, unknown>>(sql: string, params?: readonly SqlValue[]): T | undefined
  all<T = Record<string, unknown>>(sql: string, params?: readonly SqlValue[]): T[]
  exec(sql: string): void
  /**
   * Runs `fn` in one transaction (a savepoint when nested); rolls back if it throws.
   * The databases run with `synchronous = NORMAL` (WAL: a commit survives a crash of the process, and a
   * power loss rolls back whole transactions only); `durable` syncs this commit to disk before it returns,
   * for what is acknowledged to others: the outbox.
   */
  transaction<T>(fn: () => T, options?: { durable?: boolean }): T
  /**
   * Compiles `sql` without running it.
   *
   * @returns whether SQLite says the statement leaves the database unchanged (sqlite3_stmt_readonly), or
   * undefined when the driver does not tell
   * @throws Error from SQLite for a statement that does not compile
   */
  statementReadonly(sql: string): boolean | undefined
  /**
   * Compiles `sql` without running it (EXPLAIN, a statement of its own that is freed at once: bun:sqlite leaves a
   * cached EXPLAIN statement in progress, which would keep the transaction around it from committing).
   *
   * @returns the names of the virtual machine's opcodes it compiles into
   * @throws Error from SQLite for a statement that does not compile
   */
  opcodes(sql: string): string[]
  close(): void
}

interface NativeStatement {
  readonly?: boolean
  /** bun:sqlite: frees the statement */
  finalize?: () => void
  run(...params: SqlValue[]): { changes: number | bigint; lastInsertRowid: number | bigint }
  get(...params: SqlValue[]): unknown
  all(...params: SqlValue[]): unknown[]
}

interface NativeDatabase {
  /** bun:sqlite: whether a transaction is open */
  readonly inTransaction?: boolean
  /** node:sqlite: whether a transaction is open */
  readonly isTransaction?: boolean
  prepare(sql: string): NativeStatement
  exec(sql: string): void
  close(): void
}

export interface OpenOptions {
  readonly?: boolean
  /**
   * whether `file:` URIs are understood, in the path and in ATTACH (bun:sqlite opens without SQLITE_OPEN_URI
   * unless asked; node:sqlite always understands them): a rebuild attaches cairn.db read-only as `file:…?mode=ro`
   */
  uri?: boolean
}

/** How long a statement waits for another connection's write lock before it fails with SQLITE_BUSY. */
export const BUSY_TIMEOUT_MS = 5000

/** @returns whether `err` is SQLite's SQLITE_BUSY: another connection held the lock past the busy timeout */
export function isBusy(err: unknown): boolean {
  const e = err as { code?: unknown; errcode?: unknown }
  // bun:sqlite names the (extended) code; node:sqlite gives its number, whose low byte is the primary code (5).
  return (typeof e?.code === 'string' && e.code.startsWith('SQLITE_BUSY')) || (typeof e?.errcode === 'number' && (e.errcode & 0xff) === 5)
}

/**
 * What a SQLite error says of the file: the disk is full, it cannot be written, it cannot be opened at all, the
 * system failed a read or write (often a full disk, which SQLite reports so), or it is damaged.
 */
export type SqliteFailure = 'full' | 'readonly' | 'cantopen' | 'ioerr' | 'corrupt'

/** SQLite's primary result codes for SqliteFailure (bun:sqlite names them, extended codes by a suffix; node:sqlite gives the number). */
const FAILURES: ReadonlyArray<[name: string, code: number, failure: SqliteFailure]> = [
  ['SQLITE_FULL', 13, 'full'],
  ['SQLITE_READONLY', 8, 'readonly'],
  ['SQLITE_PERM', 3, 'readonly'],
  ['SQLITE_CANTOPEN', 14, 'cantopen'],
  ['SQLITE_IOERR', 10, 'ioerr'],
  ['SQLITE_CORRUPT', 11, 'corrupt'],
  ['SQLITE_NOTADB', 26, 'corrupt']
]

/** @returns what kind of failure a SQLite error reports, or undefined for any other error */
export function sqliteFailure(err: unknown): SqliteFailure | undefined {
  const e = err as { code?: unknown; errcode?: unknown } | undefined
  for (const [name, code, failure] of FAILURES) {
    if (typeof e?.code === 'string' && (e.code === name || e.code.startsWith(`${name}_`))) return failure
    if (typeof e?.errcode === 'number' && (e.errcode & 0xff) === code) return failure
  }
  return undefined
}

/**
 * Opens a SQLite database with the runtime's built-in driver.
 *
 * @param path a file path, or `:memory:`
 * @returns the database
 * @throws Error when the file cannot be opened or is not a database
 * @example
 * ```ts
 * const db = await openDatabase(':memory:')
 * db.run('CREATE TABLE t (x)')
 * ```
 */
export async function openDatabase(path: string, options: OpenOptions = {}): Promise<SqlDatabase> {
  return openDatabaseSync(path, options)
}

/**
 * Opens a SQLite database with the runtime's built-in driver, for the callers that cannot wait (the data
 * directory's lock, asked by synchronous code). A read-only open of a file that has no -wal file works on a
 * read-only file system too (see below).
 *
 * @param path a file path, or `:memory:`
 * @returns the database
 * @throws Error when the file cannot be opened or is not a database
 * @example
 * ```ts
 * const db = openDatabaseSync(':memory:')
 * db.run('CREATE TABLE t (x)')
 * ```
 */
export function openDatabaseSync(path: string, options: OpenOptions = {}): SqlDatabase {
  if (options.readonly !== true || path === ':memory:' || path.startsWith('file:')) return openNative(path, options)
  try {
    const db = openNative(path, options)
    try {
      // SQLite opens lazily: the first read is what fails (another connection's lock is no failure to open, nor
      // waited for: Deno's node:sqlite opens read-only with a busy timeout of 5 s, which a probe of a held lock,
      // and a start's probe of its own, would wait out). The driver's busy timeout is kept for what follows.
      const wait = db.get<{ timeout: number }>('PRAGMA busy_timeout')?.timeout ?? 0
      db.run('PRAGMA busy_timeout = 0')
      try {
        db.get('PRAGMA schema_version')
      } finally {
        db.run(`PRAGMA busy_timeout = ${wait}`)
      }
      return db
    } catch (err) {
      if (isBusy(err)) return db
      db.close()
      throw err
    }
  } catch (err) {
    // A read-only connection to a WAL database needs its -shm file, which it cannot create on a read-only file
    // system (or in a directory it may not write): SQLITE_CANTOPEN. Without a -wal file the database was closed
    // cleanly and nothing writes it (a writer keeps one), so the file alone is all there is to read: immutable.
    // SQLite keeps the -wal file beside the file a symbolic link points at.
    if (sqliteFailure(err) !== 'cantopen' || !existsSync(path)) throw err
    const real = realpathSync(path)
    if (existsSync(`${path}-wal`) || existsSync(`${real}-wal`)) throw err
    return openNative(`file:${encodeURI(real).replace(/[?#]/g, encodeURIComponent)}?immutable=1`, { ...options, uri: true }, path)
  }
}

function openNative(path: string, options: OpenOptions, name = path): SqlDatabase {
  let native: NativeDatabase
  if (runtimeName() === 'bun') {
    const { Database, constants } = process.getBuiltinModule('bun:sqlite') as typeof import('bun:sqlite')
    const access = options.readonly === true ? constants.SQLITE_OPEN_READONLY : constants.SQLITE_OPEN_READWRITE | constants.SQLITE_OPEN_CREATE
    native = new Database(path, access | (options.uri === true ? constants.SQLITE_OPEN_URI : 0)) as unknown as NativeDatabase
  } else {
    const { DatabaseSync } = process.getBuiltinModule('node:sqlite')
    native = new DatabaseSync(path, { readOnly: options.readonly === true }) as unknown as NativeDatabase
  }
  return new Sqlite(name, native)
}

class Sqlite implements SqlDatabase {
  readonly path: string
  private readonly native: NativeDatabase
  private readonly statements = new Map<string, NativeStatement>()
  private depth = 0
  /** why SQLite rolled back the outermost transaction by itself while a savepoint in it ran, until it unwinds */
  private lost: string | undefined

  constructor(path: string, native: NativeDatabase) {
    this.path = path
    this.native = native
  }

  private statement(sql: string): NativeStatement {
    let stmt = this.statements.get(sql)
    if (stmt == null) {
      stmt = this.native.prepare(sql)
      this.statements.set(sql, stmt)
    }
    return stmt
  }

  run(sql: string, params: readonly SqlValue[] = []): RunResult {
    if (this.depth > 0) this.stillOpen()
    const r = this.statement(sql).run(...params)
    return { changes: Number(r.changes), lastInsertRowid: r.lastInsertRowid }
  }

  get<T>(sql: string, params: readonly SqlValue[] = []): T | undefined {
    return (this.statement(sql).get(...params) ?? undefined) as T | undefined
  }

  all<T>(sql: string, params: readonly SqlValue[] = []): T[] {
    return this.statement(sql).all(...params) as T[]
  }

  exec(sql: string): void {
    this.native.exec(sql)
  }

  statementReadonly(sql: string): boolean | undefined {
    const readonly = this.native.prepare(sql).readonly
    return typeof readonly === 'boolean' ? readonly : undefined
  }

  opcodes(sql: string): string[] {
    const stmt = this.native.prepare(`EXPLAIN ${sql}`)
    try {
      return (stmt.all() as Array<{ opcode: string }>).map((op) => op.opcode)
    } finally {
      stmt.finalize?.()
    }
  }

  /**
   * Inside transaction(): the transaction SQLite may have rolled back by itself must still be open, or a write
   * (or a savepoint, which then begins a transaction of its own) would commit alone.
   *
   * @throws TransactionRolledBackError when it is not
   */
  private stillOpen(): void {
    if (this.lost == null) {
      const open = this.native.inTransaction ?? this.native.isTransaction
      if (open !== false) return
      this.lost = 'a statement ended it'
    }
    throw new TransactionRolledBackError(this.lost)
  }

  transaction<T>(fn: () => T, options: { durable?: boolean } = {}): T {
    const name = `sp${this.depth}`
    const outermost = this.depth === 0
    if (!outermost) this.stillOpen()
    const durable = outermost && options.durable === true
    if (durable) this.native.exec('PRAGMA synchronous = FULL')
    this.native.exec(outermost ? 'BEGIN IMMEDIATE' : `SAVEPOINT ${name}`)
    this.depth++
    let result: T
    try {
      result = fn()
      if (result instanceof Promise) throw new TypeError('transaction() takes a synchronous function')
      this.native.exec(outermost ? 'COMMIT' : `RELEASE ${name}`)
    } catch (err) {
      // SQLite rolls a transaction back by itself on some errors (SQLITE_FULL, SQLITE_IOERR): then the
      // rollback here fails too, and the caller must see the original error, not "no such savepoint".
      try {
        this.native.exec(outermost ? 'ROLLBACK' : `ROLLBACK TO ${name}; RELEASE ${name}`)
      } catch {
        // Inside a transaction, the savepoint is gone only when SQLite rolled the whole transaction back.
        if (!outermost) this.lost ??= (err as Error).message
      }
      throw err
    } finally {
      this.depth--
      if (this.depth === 0) this.lost = undefined
      if (durable) this.native.exec('PRAGMA synchronous = NORMAL')
    }
    return result
  }

  close(): void {
    // Finalized first where the driver can (bun:sqlite): a database with statements left open stays open
    // (sqlite3_close_v2) until they are collected, and so do its file's locks.
    for (const stmt of this.statements.values()) stmt.finalize?.()
    this.statements.clear()
    this.native.close()
  }
}
