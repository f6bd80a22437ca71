import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { dataPaths } from './layout.ts'
import { runningPid } from './lock.ts'

/** What a running node records about itself in `node.json`, for `cairn id` and the CLI verbs that talk to it. */
export interface RunInfo {
  peer_id: string
  pid: number
  version: string
  /** the build of `version` (src/version.ts BUILD); absent from node.json of older builds */
  build?: string
  addrs: string[]
  http: string
  started_at: string
  /** the plugin directories the node loaded (absolute), so that `cairn plugins` and `cairn schema` see what it runs */
  plugins?: string[]
}

/** Writes node.json atomically. */
export function writeRunInfo(dir: string, info: RunInfo): void {
  const path = dataPaths(dir).runInfo
  writeFileSync(path + '.tmp', JSON.stringify(info, null, 2) + '\n', { mode: 0o600 })
  renameSync(path + '.tmp', path)
}

/** @returns node.json when the node that wrote it still runs */
export function readRunInfo(dir: string): RunInfo | undefined {
  try {
    const info = JSON.parse(readFileSync(dataPaths(dir).runInfo, 'utf8')) as RunInfo
    return runningPid(dir) === info.pid ? info : undefined
  } catch {
    return undefined
  }
}

/** Removes node.json. */
export function clearRunInfo(dir: string): void {
  rmSync(dataPaths(dir).runInfo, { force: true })
}
