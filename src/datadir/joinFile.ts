import * as v from 'valibot'
import { readFileSync, writeFileSync } from 'node:fs'
import { multiaddr } from '@multiformats/multiaddr'
import { UsageError } from '../errors.ts'
import { PeerIdSchema } from '../model/envelope.ts'
import { formatIssues } from '../model/issues.ts'
import { parseSwarmKey } from './swarmKey.ts'

/**
 * A join file: what a new node needs to join a network, in one file that an owner hands over a secure
 * channel (it holds the swarm key): the key, the founding owners, and peers to connect to.
 */
const JoinFileSchema = v.strictObject({
  cairn_join: v.literal(1, 'Expected cairn_join: 1 (a cairn join file)'),
  swarm_key: v.string('Expected the swarm key as text'),
  owners: v.pipe(v.array(PeerIdSchema), v.minLength(1, 'Expected at least one owner')),
  bootstrap: v.optional(v.array(v.string('Expected a multiaddr')), [])
})

/** What a join file gives a new node. */
export interface JoinInfo {
  swarmKey: Uint8Array
  owners: string[]
  bootstrap: string[]
}

/**
 * Reads and checks a join file.
 *
 * @throws UsageError naming the file and what is wrong with it
 */
export function readJoinFile(path: string): JoinInfo {
  let parsed: unknown
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'))
  } catch (err) {
    throw new UsageError(`Cannot read --join ${path}: ${(err as Error).message}`)
  }
  const r = v.safeParse(JoinFileSchema, parsed)
  if (!r.success) throw new UsageError(`Cannot read --join ${path}: ${formatIssues(r.issues).join('; ')}`)
  let swarmKey: Uint8Array
  try {
    swarmKey = parseSwarmKey(r.output.swarm_key, `--join ${path} (swarm_key)`)
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  for (const a of r.output.bootstrap) {
    try {
      multiaddr(a)
    } catch (err) {
      throw new UsageError(`Cannot read --join ${path}: bootstrap ${a} is not a multiaddr: ${(err as Error).message}`)
    }
  }
  return { swarmKey, owners: r.output.owners, bootstrap: r.output.bootstrap }
}

/**
 * Writes a join file (mode 0600: it holds the swarm key); never overwrites one.
 *
 * @throws UsageError when the file exists or cannot be written
 */
export function writeJoinFile(path: string, info: { swarmKey: string; owners: readonly string[]; bootstrap: readonly string[] }): void {
  const body = { cairn_join: 1, swarm_key: info.swarmKey, owners: info.owners, bootstrap: info.bootstrap }
  try {
    writeFileSync(path, JSON.stringify(body, null, 2) + '\n', { mode: 0o600, flag: 'wx' })
  } catch (err) {
    throw new UsageError(`Cannot write ${path}: ${(err as Error).message}`)
  }
}
