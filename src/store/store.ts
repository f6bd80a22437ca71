import { openDatabase, type SqlDatabase } from '../runtime/sqlite.ts'
import { EventsTable } from './events.ts'
import { GapsTable } from './gaps.ts'
import { MetaTable } from './meta.ts'
import { migrate } from './migrations.ts'
import { OutboxTable } from './outbox.ts'
import { PluginStateTable } from './pluginState.ts'
import { ProducersTable } from './producers.ts'
import { QuarantineTable } from './quarantine.ts'
import { openQueryOnly } from './readOnly.ts'
import { RemoteDirsTable } from './remoteDirs.ts'
import { StateKeysTable } from './stateKeys.ts'
import { SnapshotsTable } from './snapshots.ts'

/** The handle a plugin's `apply` and `effect` get: run, get and all on the node's database. */
export interface PluginDbHandle {
  run: SqlDatabase['run']
  get: SqlDatabase['get']
  all: SqlDatabase['all']
}

/**
 * cairn's database (`cairn.db`), one repository per table or concept. Every SQL statement cairn runs on it
 * is in `src/store/`; services ask the tables questions by name.
 */
export class Store {
  readonly db: SqlDatabase
  readonly events: EventsTable
  readonly producers: ProducersTable
  readonly remoteDirs: RemoteDirsTable
  readonly gaps: GapsTable
  readonly quarantine: QuarantineTable
  readonly pluginState: PluginStateTable
  readonly outbox: OutboxTable
  readonly meta: MetaTable
  readonly stateKeys: StateKeysTable
  readonly snapshots: SnapshotsTable

  constructor(db: SqlDatabase) {
    this.db = db
    this.events = new EventsTable(db)
    this.producers = new ProducersTable(db)
    this.remoteDirs = new RemoteDirsTable(db)
    this.gaps = new GapsTable(db)
    this.quarantine = new QuarantineTable(db)
    this.pluginState = new PluginStateTable(db)
    this.outbox = new OutboxTable(db)
    this.meta = new MetaTable(db)
    this.stateKeys = new StateKeysTable(db)
    this.snapshots = new SnapshotsTable(db)
  }

  /**
   * Opens (creating and migrating if needed) the database at `path`.
   *
   * @param options.migrate false: throw SchemaBehindError rather than migrate an older database
   * @param options.onMigrationWait told when another process's migration holds the database and this open waits for it
   * @param options.migrationWaitMs how long to wait for it in all (default MIGRATION_WAIT_MS)
   * @throws Error when the file is not a database or is from a newer cairn; MigrationWaitError when the wait ran out
   */
  static async open(path: string, options: { migrate?: boolean; onMigrationWait?: (line: string) => void; migrationWaitMs?: number } = {}): Promise<Store> {
    const db = await openDatabase(path)
    try {
      migrate(db, undefined, undefined, { apply: options.migrate, onWait: options.onMigrationWait, waitMs: options.migrationWaitMs })
    } catch (err) {
      db.close()
      throw err
    }
    return new Store(db)
  }

  /**
   * Opens the database at `path` read-only, with `query_only` on as well, neither creating nor migrating it (on a
   * read-only file system too: see openDatabase).
   *
   * @throws Error when the file cannot be opened or is not a database
   */
  static async openReadOnly(path: string): Promise<Store> {
    return new Store(await openQueryOnly(path))
  }

  /**
   * @returns for every producer, the highest seq up to which this node has processed everything, its
   * plugins included: what its heads acknowledge
   */
  acks(): Record<string, number> {
    const pending = this.events.lowestPending()
    const acks = this.producers.processed()
    for (const [producer, seq] of Object.entries(acks)) {
      const p = pending.get(producer)
      if (p != null) acks[producer] = Math.min(seq, p - 1)
    }
    return acks
  }

  /**
   * @returns SQLite's data_version for this connection: it changes when another connection (a CLI process:
   * `cairn replay`, `cairn plugins rebuild`) committed to the database, never for this connection's own writes
   */
  dataVersion(): number {
    return this.db.get<{ data_version: number }>('PRAGMA data_version')?.data_version ?? 0
  }

  /** Runs `fn` in one transaction; see SqlDatabase.transaction. */
  transaction<T>(fn: () => T, options?: { durable?: boolean }): T {
    return this.db.transaction(fn, options)
  }

  /**
   * Whether a plugin's `apply` runs on this store (set by the runner around each call). Every handle given to
   * an apply works while any apply runs, so a handle a plugin keeps from an earlier event (in a helper object)
   * writes inside the current event's transaction; once no apply runs (after an await) it is refused.
   */
  applying = false

  /**
   * @param options.duringApply the handle works only while an apply runs (`applying`), so that a write a plugin
   * makes later (after an await) is refused instead of landing outside the event's transaction
   * @returns the database as a plugin sees it: its own SQL on its own tables; inside `apply` every call is
   * part of the transaction that records the event as applied
   */
  pluginDb(options: { duringApply?: boolean } = {}): PluginDbHandle {
    const db = (): SqlDatabase => {
      if (options.duringApply === true && !this.applying) throw new Error('ctx.db was used after apply returned (apply must be synchronous; it runs inside the transaction that applies the event)')
      return this.db
    }
    return { run: (sql, params) => db().run(sql, params), get: (sql, params) => db().get(sql, params), all: (sql, params) => db().all(sql, params) }
  }

  /**
   * @returns the database as an effect sees it: reads only. Each call runs with SQLite's query_only on, so that
   * any write (an `INSERT … RETURNING` through `get` too) is refused: an effect runs at least once, and its
   * writes would repeat with its retries.
   */
  pluginReader(): Pick<PluginDbHandle, 'get' | 'all'> & { run: (sql: string) => never } {
    const refusal = 'ctx.db in an effect only reads: write in apply, which runs exactly once (an effect runs at least once, and its writes would repeat with its retries)'
    const reading = <T>(fn: () => T): T => {
      this.db.exec('PRAGMA query_only = ON')
      try {
        return fn()
      } catch (err) {
        if (/readonly|read-only/i.test((err as Error).message)) throw new Error(`${refusal}: ${(err as Error).message}`)
        throw err
      } finally {
        this.db.exec('PRAGMA query_only = OFF')
      }
    }
    return {
      get: (sql, params) => reading(() => this.db.get(sql, params)),
      all: (sql, params) => reading(() => this.db.all(sql, params)),
      // For a plugin without types: the type has no run.
      run: () => {
        throw new Error(refusal)
      }
    }
  }

  /** @returns undefined when the database answers, else why not */
  check(): string | undefined {
    try {
      this.db.get('SELECT 1')
      return undefined
    } catch (err) {
      return (err as Error).message
    }
  }

  /** @returns SQLite's integrity check: 'ok', or what is damaged */
  integrity(): string | undefined {
    return this.db.get<{ integrity_check: string }>('PRAGMA integrity_check')?.integrity_check
  }

  /** @returns the schema version the database is at (0 before the first migration) */
  schemaVersion(): number {
    return this.db.get<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations')?.v ?? 0
  }

  close(): void {
    this.db.close()
  }
}
