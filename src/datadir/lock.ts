import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { DataDirBusyError } from '../errors.ts'
import { dataPaths } from './layout.ts'

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM'
  }
}

/** @returns the pid of the process running a node on `dir`, if any */
export function runningPid(dir: string): number | undefined {
  try {
    const pid = Number(readFileSync(dataPaths(dir).lock, 'utf8').trim())
    return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : undefined
  } catch {
    return undefined
  }
}

/**
 * Takes the data directory for this process. A lock left by a process that died is taken over.
 *
 * @returns a function that releases it
 * @throws DataDirBusyError when a live process holds it
 */
export function lockDataDir(dir: string): () => void {
  const path = dataPaths(dir).lock
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600)
      writeSync(fd, String(process.pid))
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
