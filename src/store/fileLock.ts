import { existsSync } from 'node:fs'
import { isBusy, openDatabaseSync, type SqlDatabase } from '../runtime/sqlite.ts'

/*
 * A lock on a file that the kernel frees when the holding process ends, however it ends: the file is a SQLite
 * database kept in an exclusive transaction. SQLite's unix VFS locks with fcntl, which holds across PID
 * namespaces (containers sharing a volume) and, where the file system locks for all its clients (NFSv4),
 * across hosts; SQLite also refuses a second holder in the same process.
 *
 * Such a file must never be opened but through SQLite in a process that may hold it: closing any descriptor of
 * a file drops every fcntl lock the process holds on it, and only SQLite knows which of its own to keep open.
 */

/**
 * The connections holding a lock in this process: referenced here so that no garbage collection closes one (a
 * collected bun:sqlite database is closed, which frees the lock) before its release.
 */
const holding = new Set<SqlDatabase>()

/** Why a file lock could not be taken. */
export type FileLockRefusal = { busy: true } | { busy: false; error: Error }

/**
 * Takes the lock on `path`, creating the file if it is missing, waiting up to `waitMs` for another holder
 * (or a probe) to let go.
 *
 * @returns a function that frees it (calling it twice does nothing), or why it could not be taken: another
 * process (or connection) holds it, or the error of opening or locking the file
 */
export function takeFileLock(path: string, waitMs: number): (() => void) | FileLockRefusal {
  let db: SqlDatabase
  try {
    db = openDatabaseSync(path)
  } catch (err) {
    return { busy: false, error: err as Error }
  }
  try {
    // Prepared statements, not exec: node:sqlite tells SQLITE_BUSY (errcode) only for those.
    db.run(`PRAGMA busy_timeout = ${Math.max(0, Math.floor(waitMs))}`)
    // Nothing is written to it, so no journal file either (MEMORY: bun:sqlite refuses OFF).
    db.run('PRAGMA journal_mode = MEMORY')
    db.run('BEGIN EXCLUSIVE')
    // Only now: in EXCLUSIVE locking mode a connection keeps every lock it got, so one still waiting would keep
    // the shared lock of each failed try, and two starting at once could each wait for the other until both gave up.
    db.run('PRAGMA locking_mode = EXCLUSIVE')
  } catch (err) {
    db.close()
    return isBusy(err) ? { busy: true } : { busy: false, error: err as Error }
  }
  // A file SQLite could open only read-only (a read-only file system or file, another user's) takes BEGIN
  // EXCLUSIVE as a read transaction: a shared lock, which another such process shares and a probe does not see.
  // Held is what a probe of this process sees (SQLite keeps its descriptor open while this connection locks).
  if (probeFileLock(path) !== 'held') {
    db.close()
    return { busy: false, error: new Error('it opens read-only, and a read-only file holds no exclusive lock') }
  }
  holding.add(db)
  return () => {
    if (!holding.delete(db)) return
    db.close()
  }
}

/**
 * @returns whether a process holds the lock on `path`: `held`, `free`, or `unknown` when the file cannot be
 * read (another user's, an I/O error). A missing file is free, and is not created (the directory may be
 * read-only); asking takes a shared lock for an instant, which a holder's exclusive one refuses at once.
 */
export function probeFileLock(path: string): 'held' | 'free' | 'unknown' {
  if (!existsSync(path)) return 'free'
  let db: SqlDatabase
  try {
    db = openDatabaseSync(path, { readonly: true })
  } catch {
    return 'unknown'
  }
  try {
    db.run('PRAGMA busy_timeout = 0')
    db.run('BEGIN')
    db.get('SELECT count(*) FROM sqlite_master')
    db.run('ROLLBACK')
    return 'free'
  } catch (err) {
    return isBusy(err) ? 'held' : 'unknown'
  } finally {
    db.close()
  }
}
