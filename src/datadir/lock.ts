import { chmodSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { DataDirBusyError, DataDirError } from '../errors.ts'
import { probeFileLock, takeFileLock } from '../store/fileLock.ts'
import { dataPaths } from './layout.ts'
import { whyNotWritable } from './problems.ts'

/*
 * A data directory is held by the process that holds the file lock on `instance.lock` (store/fileLock.ts), which
 * the kernel frees when that process ends, however it ends, whatever its pid or PID namespace. `run.lock` (the pid)
 * and `run.lock.start` (when that process started) are written beside it for people and for older cairns, which
 * lock with them alone. instance.lock is never removed or replaced: a new file would be a new inode, which another
 * process could lock while the holder still holds the old one.
 */

/** How long a start waits for instance.lock: a probe (runningPid) holds a shared lock on it for an instant. */
const TAKE_WAIT_MS = 2_000

/** @returns whether process `pid` lives: exists, and (where /proc tells) is no zombie, which holds no file nor lock */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (err) {
    if ((err as { code?: string }).code !== 'EPERM') return false
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return true
  }
}

/** @returns the boot this machine is in (Linux), so that a start time of an earlier boot never matches */
function bootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  } catch {
    return undefined
  }
}

/**
 * @returns when process `pid` started, as `<clock ticks since boot>@<boot id>` (field 22 of /proc/PID/stat:
 * counted from boot, so a change of the wall clock does not move it), or undefined where /proc does not
 * tell (another platform, no such process, or one that /proc hides)
 */
export function processStart(pid: number): string | undefined {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // Field 2 is the command name in parentheses, which may itself hold spaces and parentheses: count from the last ')'.
  const ticks = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[22 - 3]
  if (ticks == null || !/^\d+$/.test(ticks)) return undefined
  return `${ticks}@${bootId() ?? ''}`
}

/** The start time of the lock's writer, in a file of its own: `run.lock` keeps the pid alone, as every cairn reads it. */
const startPath = (dir: string): string => `${dataPaths(dir).lock}.start`

/**
 * @returns the start time recorded for `pid` beside the lock, if any: one recorded for another pid is not its,
 * nor one older than `run.lock` itself. The writer records it right after it writes the lock, so an older record
 * was left by an earlier lock (a crashed node, then an older cairn that knows no run.lock.start took the lock
 * over and left it); in a container every node runs as the same pid, so that record names the new holder's pid
 * with another start, and would make a live node's lock look stale.
 */
function recordedStart(dir: string, pid: number): string | undefined {
  try {
    const path = startPath(dir)
    if (statSync(path).mtimeMs < statSync(dataPaths(dir).lock).mtimeMs) return undefined
    const record = JSON.parse(readFileSync(path, 'utf8')) as { pid?: unknown; start?: unknown }
    return record.pid === pid && typeof record.start === 'string' ? record.start : undefined
  } catch {
    return undefined
  }
}

/** @returns the pid `run.lock` names, or undefined when there is none or it names none */
function lockPid(dir: string): number | undefined {
  try {
    const text = readFileSync(dataPaths(dir).lock, 'utf8').trim()
    const pid = Number(text)
    return /^\d+$/.test(text) && Number.isSafeInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

/**
 * @returns whether `pid` is, in this PID namespace on this host, the process that wrote the lock: it lives and,
 * where its start time was recorded (Linux), started then. A holder in another container or on another host
 * has another pid here (in a container every node is pid 1), or none.
 */
function wroteLock(dir: string, pid: number): boolean {
  if (!alive(pid)) return false
  const recorded = recordedStart(dir, pid)
  if (recorded == null) return true
  const now = processStart(pid)
  return now == null || now === recorded
}

/**
 * @returns the pid of a process of an older cairn holding `dir` by `run.lock` alone, if any: a live process with
 * the pid it names, other than this one, that started when `run.lock.start` says (where recorded). A cairn of
 * this version holds instance.lock too, so that once instance.lock is free a lock it left is stale.
 */
function olderCairnPid(dir: string): number | undefined {
  const pid = lockPid(dir)
  return pid != null && pid !== process.pid && wroteLock(dir, pid) ? pid : undefined
}

/** Who holds a data directory. */
export interface LockHolder {
  /**
   * the pid in `run.lock`, as the holder sees it; undefined when run.lock names none (the holder is between
   * taking instance.lock and writing run.lock, or between removing it and stopping; or it was removed by hand)
   */
  pid: number | undefined
  /**
   * whether that pid is the holder in this PID namespace on this host; false for a node in another container
   * or on another host sharing the directory (its pid means nothing here)
   */
  here: boolean
}

/** @returns the holder of instance.lock, as run.lock names it */
function instanceHolder(dir: string): LockHolder {
  const pid = lockPid(dir)
  return { pid, here: pid != null && wroteLock(dir, pid) }
}

/**
 * @returns who runs a node on `dir`, or undefined when nobody does: the holder of instance.lock, else a live
 * process of an older cairn holding run.lock alone. A run.lock a crashed node left is so stale, also once
 * another process has its pid (in a container: every node's pid 1).
 */
export function lockHolder(dir: string): LockHolder | undefined {
  if (probeFileLock(dataPaths(dir).instance) === 'held') return instanceHolder(dir)
  const older = olderCairnPid(dir)
  return older == null ? undefined : { pid: older, here: true }
}

/**
 * @returns the pid of the node running on `dir`, as `run.lock` names it, if any node runs (see lockHolder)
 */
export function runningPid(dir: string): number | undefined {
  return lockHolder(dir)?.pid
}

/** @returns the error saying that `holder` runs a node on `dir` */
function busyError(dir: string, holder: LockHolder): DataDirBusyError {
  const what = 'stop it first, or use another --data directory'
  if (holder.pid == null) return new DataDirBusyError(`Cannot run: a node is already running on ${dir} (it holds ${dataPaths(dir).instance}; its run.lock names no pid); ${what}`)
  if (!holder.here) {
    return new DataDirBusyError(`Cannot run: a node is already running on ${dir} as pid ${holder.pid} of another container or host sharing the directory; ${what}`)
  }
  return new DataDirBusyError(`Cannot run: a node (pid ${holder.pid}) is already running on ${dir}; ${what}`)
}

/** @returns the system's reason, in brackets after a message, or nothing */
const because = (why: string | undefined): string => (why == null ? '' : ` (${why})`)

/**
 * Takes instance.lock (created at the first start).
 *
 * @returns a function that frees it
 * @throws DataDirBusyError when another process holds it; DataDirError when it cannot be opened or locked
 */
function takeInstanceLock(dir: string): () => void {
  const path = dataPaths(dir).instance
  const taken = takeFileLock(path, TAKE_WAIT_MS)
  if (typeof taken !== 'function') {
    if (taken.busy) throw busyError(dir, instanceHolder(dir))
    throw new DataDirError(`Cannot run: cannot lock ${path}: ${taken.error.message}${because(whyNotWritable(path))}`)
  }
  try {
    // SQLite creates it with the umask's mode; like every file of the directory it is the user's alone.
    if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600)
  } catch {
    // Another user's file (doctor says so); the lock holds all the same.
  }
  return taken
}

/**
 * Removes what an older cairn's takeover of a stale run.lock left when it crashed in the middle: `run.lock.stale.PID`
 * and `run.lock.PID.tmp` of processes that no longer run.
 */
function removeLeftovers(dir: string): void {
  try {
    for (const name of readdirSync(dir)) {
      const pid = /^run\.lock\.(?:stale\.(\d+)|(\d+)\.tmp)$/.exec(name)
      if (pid == null) continue
      const n = Number(pid[1] ?? pid[2])
      if (n === process.pid || !alive(n)) rmSync(join(dir, name), { force: true })
    }
  } catch {
    // Leftovers mislead no one: run.lock alone names the holder.
  }
}

/**
 * Takes the data directory for this process: instance.lock first, then run.lock and run.lock.start, which it
 * (over)writes. A node that died, however it died, left instance.lock free; of several processes starting at
 * once, one gets it.
 *
 * @returns a function that releases it (removes run.lock and run.lock.start, then frees instance.lock); calling it twice does nothing
 * @throws DataDirBusyError when a live process holds it (a node of this version, wherever it runs, or of an older
 * cairn on this host); DataDirError when the lock cannot be taken or written (a read-only or full file system, a
 * directory this user may not write, a file system without locks)
 */
export function lockDataDir(dir: string): () => void {
  const path = dataPaths(dir).lock
  const free = takeInstanceLock(dir)
  try {
    // No cairn of this version writes run.lock without instance.lock: a live writer is an older cairn's node.
    const older = olderCairnPid(dir)
    if (older != null) throw busyError(dir, { pid: older, here: true })
    // Written aside, then renamed into place: a reader never sees a lock without its pid.
    const tmp = `${path}.${process.pid}.tmp`
    try {
      writeFileSync(tmp, String(process.pid), { mode: 0o600 })
      renameSync(tmp, path)
    } catch (err) {
      try {
        rmSync(tmp, { force: true })
      } catch {
        // Not written either (a read-only file system): the error to tell is the write's.
      }
      throw new DataDirError(`Cannot run: cannot create ${path}: ${(err as Error).message}`)
    }
    const start = processStart(process.pid)
    try {
      if (start != null) writeFileSync(startPath(dir), `${JSON.stringify({ pid: process.pid, start })}\n`, { mode: 0o600 })
      else rmSync(startPath(dir), { force: true })
    } catch {
      // Without it the lock is read as held while a process with this pid lives: by an older cairn only when instance.lock is free.
    }
    removeLeftovers(dir)
  } catch (err) {
    free()
    throw err
  }
  let released = false
  return () => {
    if (released) return
    released = true
    try {
      if (lockPid(dir) === process.pid) {
        rmSync(startPath(dir), { force: true })
        rmSync(path, { force: true })
      }
    } finally {
      free()
    }
  }
}
