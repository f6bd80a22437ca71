import { accessSync, constants, existsSync, readFileSync, statfsSync, statSync } from 'node:fs'
import { userInfo } from 'node:os'
import { dirname, resolve, sep } from 'node:path'
import { DataDirError } from '../errors.ts'
import { sqliteFailure } from '../runtime/sqlite.ts'

/** Free space below which a file system counts as full: SQLite needs a few pages (its -shm file is 32 KiB) to open a database. */
const FULL_BELOW_BYTES = 256 * 1024

/** @returns the message for a --data path that names something other than a directory (a file) */
export function notADirectory(dir: string): string {
  return `${dir} is not a directory: --data names a data directory (cairn init --data DIR creates one); move that file away or pick another path`
}

/** @returns `path`, or the nearest directory above it that exists */
function existing(path: string): string {
  let target = path
  while (!existsSync(target) && dirname(target) !== target) target = dirname(target)
  return target
}

/**
 * @returns why `path` (or, when it does not exist, the directory it would be made in) cannot be written, as the
 * system says it (EROFS: a read-only file system; EACCES: another user's file or directory); undefined when it can be
 */
export function whyNotWritable(path: string): string | undefined {
  try {
    // access(2) opens nothing: no descriptor of a database is closed behind SQLite's back.
    accessSync(existing(path), constants.W_OK)
    return undefined
  } catch (err) {
    return (err as Error).message
  }
}

/** @returns the space left for this user and the size of the file system holding `path` (bytes); undefined when the system does not say */
export function diskSpace(path: string): { free: number; total: number } | undefined {
  try {
    const fs = statfsSync(existing(path))
    return { free: fs.bavail * fs.bsize, total: fs.blocks * fs.bsize }
  } catch {
    return undefined
  }
}

/**
 * @param space what diskSpace gave for `path`, when the caller has it already
 * @returns whether the file system holding `path` has (almost) no space left for this user
 */
export function diskFull(path: string, space = diskSpace(path)): boolean {
  return space != null && space.free < FULL_BELOW_BYTES
}

/** @returns whether `err` says that a write failed for lack of space (ENOSPC, EDQUOT, SQLITE_FULL) */
export function isDiskFullError(err: unknown): boolean {
  const code = systemCode(err)
  return code === 'ENOSPC' || code === 'EDQUOT' || sqliteFailure(err) === 'full' || /disk is full|no space left/i.test((err as Error | undefined)?.message ?? '')
}

/** @returns the system's error code of a file system error (ENOSPC, EROFS, …), if it has one */
function systemCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | undefined)?.code
  return typeof code === 'string' && /^E[A-Z]+$/.test(code) ? code : undefined
}

/**
 * What to do when a file of the data directory cannot be written because the disk is full, or the file system
 * is read-only or another user's; told apart by the system's error code, SQLite's result code, and then by
 * asking the system (free space, write access), since SQLite often says only "unable to open database file" or
 * "disk I/O error". Neither damages a file, so the advice never says to restore or move one away.
 *
 * @param path the file or directory that could not be written
 * @returns the advice, with the system's reason where the error did not give it; undefined for another error
 */
export function unwritableAdvice(path: string, err: unknown): string | undefined {
  const code = systemCode(err)
  const failure = sqliteFailure(err)
  const full = `the disk is full: free space on the file system of ${path} (or move the data directory to a larger one), then run this again`
  if (code === 'ENOSPC' || code === 'EDQUOT' || failure === 'full') return full
  if (code === 'EROFS') return `${path} is on a read-only file system: mount it read-write, then run this again`
  if (code === 'EACCES' || code === 'EPERM') return `this user may not write ${path}: give it write access (or run as the user that owns the data directory), then run this again`
  if (failure === 'readonly' || failure === 'cantopen') {
    // SQLite writes beside a database too (its -wal and -shm files): the directory must be writable as well. A
    // read-only file system may have no free space at all (an image): asked first.
    for (const target of [path, dirname(path)]) {
      const why = whyNotWritable(target)
      if (why != null) return `${target} cannot be written (${why}): mount it read-write, or give this user write access to it, then run this again`
    }
  }
  // SQLite often reports a full disk only as an I/O error or a file it cannot open: the free space tells.
  if ((failure === 'ioerr' || failure === 'cantopen' || failure === 'readonly') && diskFull(path)) return full
  return undefined
}

/** @returns whether a file system error is the system refusing this user access (EACCES, EPERM), not a missing or damaged file */
export function isPermissionDenied(err: unknown): boolean {
  const code = systemCode(err)
  return code === 'EACCES' || code === 'EPERM'
}

/** @returns the name of the user with that uid (from /etc/passwd), else the uid */
function userName(uid: number): string {
  try {
    const line = readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((l) => l.split(':')[2] === String(uid))
    if (line != null) return line.split(':')[0]
  } catch {
    // No passwd file to read (a container's scratch image): the uid says it.
  }
  return `uid ${uid}`
}

/** @returns this process's user, as `name (uid N)` */
function thisUser(): { name: string; uid: number } {
  const uid = process.getuid?.() ?? -1
  try {
    return { name: userInfo().username, uid }
  } catch {
    return { name: userName(uid), uid }
  }
}

/**
 * The message for an entry of the data directory that this user may not read (EACCES, EPERM: another user's
 * file or directory, a mode too tight): it names the path, this user, the data directory's owner and mode, and
 * the fix, and says that the file is fine; it is never reported as missing or damaged.
 *
 * @param dir the data directory
 * @param path the entry the system refused
 */
export function permissionDenied(dir: string, path: string, err: unknown): string {
  const user = thisUser()
  let owner = ''
  let ownerName: string | undefined
  try {
    const st = statSync(dir)
    ownerName = userName(st.uid)
    owner = `; ${dir} belongs to ${ownerName}, mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}`
  } catch {
    // A directory above it refuses this user: that one is what to fix, not the data directory.
    const blocker = untraversable(dir)
    if (blocker != null) {
      const st = statSync(blocker.path, { throwIfNoEntry: false })
      const held = st == null ? '' : `, which belongs to ${userName(st.uid)}, mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}`
      return (
        `Cannot read ${path}: permission denied (${(err as Error).message}): this user (${user.name}, uid ${user.uid}) may not enter ${blocker.path}${held}, above the data directory; ` +
        `let it in (chmod o+x ${blocker.path}, or a group it is in), move the data directory to where it may go, or run as a user that may, then run this again (the file is not damaged: there is nothing to restore)`
      )
    }
  }
  const runAs = ownerName == null || ownerName === user.name ? 'the user that owns the data directory' : `the user that owns the data directory (${ownerName})`
  return (
    `Cannot read ${path}: permission denied (${(err as Error).message}): this user (${user.name}, uid ${user.uid}) may not read it${owner}; ` +
    `give it access (chown -R ${user.name} ${dir}, then chmod 700 ${dir} and 600 its files), or run as ${runAs}, then run this again (the file is not damaged: there is nothing to restore)`
  )
}

/**
 * Turns an error met opening (or first writing) a database of the data directory into one naming the file and
 * what to do: a full disk or an unwritable file system says so and that the file is fine; anything else gets
 * `damaged`, the advice for a damaged file (SQLITE_CORRUPT, SQLITE_NOTADB, a schema of a newer cairn).
 */
export function databaseError(path: string, err: unknown, damaged?: string): DataDirError {
  const message = (err as Error).message
  // A newer cairn's schema: its message names the file and what to do, and it is no damage.
  if ((err as Error).name === 'SchemaAheadError') return new DataDirError(message)
  const advice = unwritableAdvice(path, err)
  if (advice != null) return new DataDirError(`Cannot open ${path}: ${message}; ${advice} (the file is not damaged: there is nothing to restore)`)
  return new DataDirError(`Cannot open ${path}: ${message}${damaged == null ? '' : `; ${damaged}`}`)
}

/**
 * Turns an error met while creating a data directory into one naming the directory, the system's reason and what to do.
 *
 * @returns `err` itself when it is already an operator-facing error, or is none of these
 */
export function creationError(dir: string, err: unknown): unknown {
  const name = (err as Error | undefined)?.name
  if (name === 'DataDirError' || name === 'UsageError') return err
  const code = systemCode(err)
  if (code === 'ENOTDIR') return new DataDirError(`Cannot create the data directory ${dir}: ${(err as Error).message}; a part of that path is a file, not a directory: pick another --data path`)
  if (code === 'EEXIST') {
    // mkdir met a file where it makes a directory (a datastore file in a directory half made): the error's own path.
    const path = (err as { path?: unknown }).path
    return new DataDirError(
      `Cannot create the data directory ${dir}: ${(err as Error).message}; ${typeof path === 'string' ? path : 'an entry of it'} is a file where a directory belongs: move it away, then run this again`
    )
  }
  const advice = unwritableAdvice(dir, err)
  return advice == null ? err : new DataDirError(`Cannot create the data directory ${dir}: ${(err as Error).message}; ${advice}`)
}

/** @returns the outermost directory above `dir` (or `dir` itself) that this user may not enter, or undefined */
function untraversable(dir: string): { path: string } | undefined {
  const parts = resolve(dir).split(sep).filter(Boolean)
  for (let i = 1; i <= parts.length; i++) {
    const path = sep + parts.slice(0, i).join(sep)
    try {
      accessSync(path, constants.X_OK)
    } catch (err) {
      if (isPermissionDenied(err)) return { path }
      return undefined
    }
  }
  return undefined
}
