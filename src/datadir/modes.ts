import { chmodSync, lstatSync, readdirSync, type Stats } from 'node:fs'
import { join } from 'node:path'

/** The most entries the mode check visits: the data directory holds a handful, the datastore a few more. */
const MAX_ENTRIES = 10_000

/** A file or directory of the data directory whose mode lets others in. */
export interface LooseMode {
  path: string
  /** the permission bits, such as 0o644 */
  mode: number
}

/** @returns every directory (0700) and regular file (0600) under `dir`, `dir` first, at most MAX_ENTRIES */
function entries(dir: string): Array<{ path: string; directory: boolean; mode: number }> {
  const out: Array<{ path: string; directory: boolean; mode: number }> = []
  const queue = [dir]
  for (let next = 0; next < queue.length; next++) {
    const path = queue[next]
    let st: Stats
    try {
      st = lstatSync(path)
    } catch {
      continue
    }
    if (st.isSymbolicLink()) continue
    out.push({ path, directory: st.isDirectory(), mode: st.mode & 0o777 })
    if (st.isDirectory()) for (const name of readdirSync(path)) if (queue.length < MAX_ENTRIES) queue.push(join(path, name))
  }
  return out
}

/**
 * @returns the entries of the data directory that others may read or enter: directories must be 0700,
 * files 0600 (the identity key, swarm key, token, databases and their -wal/-shm, node.json, config.json)
 */
export function looseModes(dir: string): LooseMode[] {
  return entries(dir)
    .filter((e) => (e.mode & 0o077) !== 0)
    .map((e) => ({ path: e.path, mode: e.mode }))
}

/** Makes the data directory 0700 and every file in it 0600 (subdirectories 0700), whatever made them. */
export function tightenModes(dir: string): void {
  for (const e of entries(dir)) {
    const want = e.directory ? 0o700 : 0o600
    if (e.mode !== want) chmodSync(e.path, want)
  }
}
