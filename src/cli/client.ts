import { NotRunningError } from '../errors.ts'
import type { Issue } from '../model/issues.ts'
import { readSse } from '../client/sse.ts'
import { loadApiToken } from '../datadir/load.ts'
import { lockHolder } from '../datadir/lock.ts'
import { readRunInfo, type RunInfo } from '../datadir/runInfo.ts'

/** What the endpoint answers a failed request with. */
export interface ErrorBody {
  error?: { code: string; message: string; issues: Issue[] }
}

/**
 * Fetches from the running node's endpoint.
 *
 * @throws NotRunningError when its endpoint cannot be reached: the node runs in another container or on another
 * host sharing the directory (its loopback is not this one), or it is stopping or hung
 */
async function fetchNode(dir: string, info: RunInfo, path: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(`http://${info.http}${path}`, init)
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw err
    const why = (err as Error).message
    const holder = lockHolder(dir)
    if (holder != null && !holder.here) {
      throw new NotRunningError(
        `The node on ${dir} runs in another container or on another host sharing the directory (pid ${holder.pid ?? 'unknown'} there): its endpoint ${info.http} does not answer here (${why}); run this command where the node runs`
      )
    }
    throw new NotRunningError(`The node on ${dir} (pid ${info.pid}) does not answer at ${info.http} (${why}): it may be stopping or hung; cairn doctor --data ${dir} says whether it runs`)
  }
}

/**
 * Calls the running node's loopback endpoint, found through node.json, with the token from api.token.
 *
 * @returns the HTTP status and the parsed JSON body: `T` on success (the node's own answer for the route), an error body otherwise
 * @throws NotRunningError when no node runs on the data directory, or its endpoint cannot be reached
 */
export async function callNode<T = unknown>(dir: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: T & ErrorBody }> {
  const info = readRunInfo(dir)
  if (info == null) throw new NotRunningError(`No node is running on ${dir}: start it with cairn run --data ${dir}`)
  const res = await fetchNode(dir, info, path, {
    method,
    headers: { authorization: `Bearer ${loadApiToken(dir)}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(60_000)
  })
  const text = await res.text()
  let parsed: unknown = text
  try {
    parsed = JSON.parse(text)
  } catch {}
  // The node's loopback endpoint answers each route with the JSON its reference names.
  return { status: res.status, body: parsed as T & ErrorBody }
}

/**
 * Reads a Server-Sent Events route of the running node and calls `onEvent` with each `event` message's
 * data, until the node stops or the process is interrupted.
 *
 * @throws NotRunningError when no node runs on the data directory, or its endpoint cannot be reached
 */
export async function followNode(dir: string, path: string, onEvent: (data: string) => void): Promise<void> {
  const info = readRunInfo(dir)
  if (info == null) throw new NotRunningError(`No node is running on ${dir}: --follow needs it; start it with cairn run --data ${dir}`)
  const ctrl = new AbortController()
  process.once('SIGINT', () => {
    ctrl.abort()
  })
  process.once('SIGTERM', () => {
    ctrl.abort()
  })
  try {
    const res = await fetchNode(dir, info, path, { headers: { authorization: `Bearer ${loadApiToken(dir)}` }, signal: ctrl.signal })
    if (res.status !== 200 || res.body == null) throw new NotRunningError(`Cannot follow: the node answered HTTP ${res.status}`)
    for await (const m of readSse(res.body)) if (m.event == null) onEvent(m.data)
  } catch (err) {
    if ((err as Error).name === 'AbortError') return
    throw err
  }
}
