import { closeSync, existsSync, linkSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs'
import { DataDirBusyError, DataDirError } from '../errors.ts'
import { dataPaths } from './layout.ts'

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM'
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

/**
 * @returns the pid of the process running a node on `dir`, if any: the pid in `run.lock`, when a process
 * with that pid lives and, where its start time was recorded (`run.lock.start`, Linux), started then. A lock
 * a crashed node left is so stale even once an unrelated process has its pid; without a recorded start
 * (another platform, a lock an older cairn wrote) a live process with the pid holds it.
 */
export function runningPid(dir: string): number | undefined {
  let pid: number
  try {
    const text = readFileSync(dataPaths(dir).lock, 'utf8').trim()
    if (!/^\d+$/.test(text)) return undefined
    pid = Number(text)
  } catch {
    return undefined
  }
  if (!Number.isSafeInteger(pid) || pid <= 0 || !alive(pid)) return undefined
  const recorded = recordedStart(dir, pid)
  if (recorded == null) return pid
  const now = processStart(pid)
  return now == null || now === recorded ? pid : undefined
}

/** What a lock file was when it was judged stale: taking it over removes that very file, never a newer one. */
export interface JudgedLock {
  ino: bigint
  mtimeNs: bigint
  text: string
}

/** @returns the lock file at `path` as it is now, or undefined when there is none */
export function judgeLock(path: string): JudgedLock | undefined {
  try {
    const st = statSync(path, { bigint: true })
    return { ino: st.ino, mtimeNs: st.mtimeNs, text: readFileSync(path, 'utf8') }
  } catch {
    return undefined
  }
}

/**
 * Removes the lock file at `path` if it is still `judged`: it is renamed aside first (one process wins the
 * rename), and when what was renamed is another file (a process that took the lock over meanwhile), it is
 * put back. Two processes that both judged one stale lock so never both take it.
 *
 * @returns whether the judged file was removed (or was gone already)
 */
export function removeStaleLock(path: string, judged: JudgedLock): boolean {
  const aside = `${path}.stale.${process.pid}`
  try {
    renameSync(path, aside)
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return true
    throw err
  }
  const moved = judgeLock(aside)
  if (moved != null && moved.ino === judged.ino && moved.mtimeNs === judged.mtimeNs && moved.text === judged.text) {
    rmSync(aside, { force: true })
    return true
  }
  try {
    linkSync(aside, path)
  } catch (err) {
    // EEXIST: a third process placed its lock in the instant the file was aside: it holds the directory now,
    // and the process whose file was moved runs on without one (three starts at once on one stale lock).
    // Any other error: a file system without hard links, where the file goes back by rename, unless a third
    // process's lock is there.
    if ((err as { code?: string }).code !== 'EEXIST' && !existsSync(path)) {
      renameSync(aside, path)
      return false
    }
  }
  rmSync(aside, { force: true })
  return false
}

/**
 * Removes the start record of the stale lock that held pid `stalePid`, and only that one: once the lock is gone,
 * another process may have taken the directory and recorded its own start, which must stay.
 */
function removeStaleStart(dir: string, stalePid: string): void {
  try {
    const record = JSON.parse(readFileSync(startPath(dir), 'utf8')) as { pid?: unknown }
    if (String(record.pid) === stalePid) rmSync(startPath(dir), { force: true })
  } catch {
    // None, or one being written (it is read as no record until it is whole).
  }
}

/** Places a lock file holding this process's pid at `path`, whole, or throws EEXIST when one is there. */
function createLock(path: string): void {
  // Written aside, then linked into place: a reader never sees a lock without its pid.
  const tmp = `${path}.${process.pid}.tmp`
  writeFileSync(tmp, String(process.pid), { mode: 0o600 })
  try {
    linkSync(tmp, path)
  } catch (err) {
    if ((err as { code?: string }).code === 'EEXIST') throw err
    // A file system without hard links (EPERM, ENOTSUP, ENOSYS on FUSE, ...): create in place (a reader may
    // see the file empty for an instant). An error that is not about links fails here again, naming run.lock.
    const fd = openSync(path, 'wx', 0o600)
    writeSync(fd, String(process.pid))
    closeSync(fd)
  } finally {
    rmSync(tmp, { force: true })
  }
}

/**
 * How long an empty lock is one being written: where there are no hard links the lock is created, then its pid
 * written (an older cairn does the same everywhere). An empty lock older than this was left by a crash in between.
 */
const WRITING_MS = 5_000

/**
 * Takes the data directory for this process. A lock left by a process that died is taken over, also when
 * another process has its pid now; of several processes taking one stale lock over at once, one gets it.
 *
 * @returns a function that releases it
 * @throws DataDirBusyError when a live process holds it; DataDirError when the lock cannot be written (a read-only
 * or full file system, a directory this user may not write)
 */
export function lockDataDir(dir: string): () => void {
  const path = dataPaths(dir).lock
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      createLock(path)
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST') throw new DataDirError(`Cannot run: cannot create ${path}: ${(err as Error).message}`)
      const judged = judgeLock(path)
      if (judged != null && judged.text.trim() === '' && Math.abs(Date.now() - Number(judged.mtimeNs / 1_000_000n)) < WRITING_MS) {
        throw new DataDirBusyError(`Cannot run: another cairn is taking ${dir} (${path} has no pid yet); try again in a few seconds, or use another --data directory`)
      }
      const pid = runningPid(dir)
      if (pid != null && pid !== process.pid) {
        throw new DataDirBusyError(`Cannot run: a node (pid ${pid}) is already running on ${dir}; stop it first, or use another --data directory`)
      }
      if (judged != null && removeStaleLock(path, judged)) removeStaleStart(dir, judged.text.trim())
      continue
    }
    const start = processStart(process.pid)
    try {
      if (start != null) writeFileSync(startPath(dir), `${JSON.stringify({ pid: process.pid, start })}\n`, { mode: 0o600 })
    } catch {
      // Without it the lock is read as an older cairn's: held while a process with this pid lives.
    }
    return () => {
      if (runningPid(dir) !== process.pid) return
      rmSync(startPath(dir), { force: true })
      rmSync(path, { force: true })
    }
  }
  throw new DataDirBusyError(`Cannot run: could not take ${path}`)
}
