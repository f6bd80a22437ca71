import { NodeAnswerError, NotRunningError } from '../errors.ts'
import { issueLine, type Issue } from '../model/issues.ts'
import { clip } from '../util/clip.ts'
import { readSse } from '../client/sse.ts'
import { loadApiToken } from '../datadir/load.ts'
import { lockHolder } from '../datadir/lock.ts'
import { readRunInfo, type RunInfo } from '../datadir/runInfo.ts'

/** What the endpoint answers a failed request with. */
export interface ErrorBody {
  error?: { code: string; message: string; issues: Issue[] }
}

/**
 * Says that the node answered a request with an error (a 4xx or 5xx: a refusal, a full disk, a bug), with its HTTP
 * status and its own message (the endpoint's error JSON; else the start of the body), and the issues one a line.
 *
 * @param what what the verb could not do, put first; without it the node's message comes first (it says what failed)
 * @param options.issues whether to add the issues (default true; a caller that words them itself leaves them out)
 */
export function nodeAnswerError(res: { status: number; body: unknown }, what?: string, options: { issues?: boolean } = {}): NodeAnswerError {
  const body = res.body as ErrorBody | string | undefined
  const error = typeof body === 'object' ? body?.error : undefined
  const text = typeof body === 'string' ? clip(body.trim()) : ''
  const message = typeof error?.message === 'string' ? error.message : text !== '' ? text : '(no message)'
  const issues = options.issues === false ? [] : (error?.issues ?? []).map(issueLine)
  const line = what == null ? `${message} (HTTP ${res.status})` : `${what}: the node answered HTTP ${res.status}: ${message}`
  return new NodeAnswerError(res.status, `${line}${issues.length > 1 ? '\n  ' + issues.join('\n  ') : ''}`)
}

/**
 * Calls the running node like callNode, for a verb that needs its answer.
 *
 * @param what what the verb asks, for the error (e.g. "Cannot read the node's status")
 * @returns the body of a 2xx answer
 * @throws NodeAnswerError for any other answer; NotRunningError as callNode
 */
export async function askNode<T>(dir: string, method: string, path: string, what: string, body?: unknown): Promise<T> {
  const res = await callNode<T>(dir, method, path, body)
  if (res.status < 200 || res.status > 299) throw nodeAnswerError(res, what)
  return res.body
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
    if (res.status !== 200 || res.body == null) {
      const text = await res.text()
      let body: unknown = text
      try {
        body = JSON.parse(text)
      } catch {}
      throw nodeAnswerError({ status: res.status, body }, 'Cannot follow')
    }
    for await (const m of readSse(res.body)) if (m.event == null) onEvent(m.data)
  } catch (err) {
    if ((err as Error).name === 'AbortError') return
    throw err
  }
}
