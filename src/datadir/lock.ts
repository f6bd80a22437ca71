import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { DataDirBusyError } from '../errors.ts'
import { dataPaths } from './layout.ts'

/**
 * What `run.lock` holds: the pid of the process that wrote it and when that process started, so that another
 * process given the same pid after a crash is not taken for the writer. `start` is null where the platform
 * does not tell (no /proc): then, as for a lock file of an older cairn (the pid alone), the pid decides.
 */
interface LockRecord {
  pid: number
  start: string | null
}

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
 * @returns when process `pid` started, as `<clock ticks since boot>@<boot id>` (field 22 of /proc/PID/stat),
 * or undefined where /proc does not tell (another platform, no such process, or one that /proc hides)
 */
export function processStart(pid: number): string | undefined {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // Field 2 is the command name in parentheses, which may itself hold spaces and parentheses: count from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const ticks = fields[22 - 3]
  if (ticks == null || !/^\d+$/.test(ticks)) return undefined
  return `${ticks}@${bootId() ?? ''}`
}

/** @returns the lock file's record: `{"pid", "start"}`, or a bare pid (written by an older cairn) */
function readLock(path: string): LockRecord | undefined {
  let text: string
  try {
    text = readFileSync(path, 'utf8').trim()
  } catch {
    return undefined
  }
  if (/^\d+$/.test(text)) return { pid: Number(text), start: null }
  try {
    const record = JSON.parse(text) as Partial<LockRecord>
    if (!Number.isSafeInteger(record.pid) || (record.pid as number) <= 0) return undefined
    return { pid: record.pid as number, start: typeof record.start === 'string' ? record.start : null }
  } catch {
    return undefined
  }
}

/** @returns whether the process that wrote `record` still runs: the same pid, started at the same time */
function holds(record: LockRecord): boolean {
  if (record.start != null) {
    const now = processStart(record.pid)
    if (now != null) return now === record.start
  }
  return alive(record.pid)
}

/** @returns the pid of the process running a node on `dir`, if any */
export function runningPid(dir: string): number | undefined {
  const record = readLock(dataPaths(dir).lock)
  return record != null && holds(record) ? record.pid : undefined
}

/**
 * Takes the data directory for this process. A lock left by a process that died is taken over, also when
 * another process has its pid now.
 *
 * @returns a function that releases it
 * @throws DataDirBusyError when a live process holds it
 */
export function lockDataDir(dir: string): () => void {
  const path = dataPaths(dir).lock
  const record: LockRecord = { pid: process.pid, start: processStart(process.pid) ?? null }
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600)
      writeSync(fd, `${JSON.stringify(record)}\n`)
      closeSync(fd)
      return () => {
        if (runningPid(dir) === process.pid) rmSync(path, { force: true })
      }
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST') throw err
      const pid = runningPid(dir)
      if (pid != null && pid !== process.pid) {
        throw new DataDirBusyError(`Cannot run: a node (pid ${pid}) is already running on ${dir}; stop it first, or use another --data directory`)
      }
      rmSync(path, { force: true })
    }
  }
  throw new DataDirBusyError(`Cannot run: could not take ${path}`)
}
