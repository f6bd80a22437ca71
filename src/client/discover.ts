import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CairnUnavailableError } from './errors.ts'

/** Where a node's loopback endpoint is and the token it takes. */
export interface Endpoint {
  /** `http://127.0.0.1:PORT` */
  baseUrl: string
  token: string
}

/**
 * Finds a node's endpoint from its data directory: the address in `node.json` (written by the running
 * node) and the token in `api.token`.
 *
 * @param dataDir the node's data directory
 * @returns the endpoint
 * @throws CairnUnavailableError when no node has written node.json there (it is not running)
 * @example
 * ```ts
 * const { baseUrl, token } = await discover('/var/lib/cairn')
 * ```
 */
export async function discover(dataDir: string): Promise<Endpoint> {
  let info: { http?: unknown }
  try {
    info = JSON.parse(await readFile(join(dataDir, 'node.json'), 'utf8')) as { http?: unknown }
  } catch (err) {
    throw new CairnUnavailableError(`Cannot find the node of ${dataDir}: no readable node.json (${(err as Error).message}); start it with cairn run --data ${dataDir}`, { cause: err })
  }
  if (typeof info.http !== 'string') throw new CairnUnavailableError(`Cannot find the node of ${dataDir}: node.json names no http address`)
  const token = (await readFile(join(dataDir, 'api.token'), 'utf8')).trim()
  return { baseUrl: `http://${info.http}`, token }
}
