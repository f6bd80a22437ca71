import { existsSync, readFileSync, statSync } from 'node:fs'
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import { DataDirError } from '../errors.ts'
import { SchemaBehindError } from '../store/migrations.ts'
import { Store } from '../store/store.ts'
import { dataPaths } from './layout.ts'
import { runningPid } from './lock.ts'
import { readRunInfo } from './runInfo.ts'
import { parseSwarmKey } from './swarmKey.ts'

/**
 * Checks that `dir` is an initialised data directory.
 *
 * @throws DataDirError saying how to create one
 */
export function assertDataDir(dir: string): void {
  const p = dataPaths(dir)
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new DataDirError(`No data directory at ${dir}: create one with cairn init --data ${dir} --new-network (or --swarm-key FILE to join a network)`)
  }
  if (!existsSync(p.identity)) {
    throw new DataDirError(`${dir} is not a cairn data directory (no identity.key): create one with cairn init --data ${dir} --new-network`)
  }
}

/**
 * Reads the node's Ed25519 identity.
 *
 * @throws DataDirError when it is missing or damaged
 */
export async function loadIdentity(dir: string): Promise<{ privateKey: PrivateKey; peerId: PeerId }> {
  assertDataDir(dir)
  const path = dataPaths(dir).identity
  try {
    const privateKey = privateKeyFromProtobuf(readFileSync(path))
    return { privateKey, peerId: peerIdFromPrivateKey(privateKey) }
  } catch (err) {
    throw new DataDirError(`Cannot read ${path}: the identity is damaged (${(err as Error).message}); restore it from a backup, or create a new node with cairn init in an empty directory`)
  }
}

/**
 * Reads the node's swarm key. A node never runs without one.
 *
 * @throws DataDirError when it is missing or not in the standard format
 */
export function loadSwarmKey(dir: string): Uint8Array {
  const path = dataPaths(dir).swarmKey
  if (!existsSync(path)) {
    throw new DataDirError(`Cannot start without a swarm key: ${path} is missing; copy the network's swarm.key there`)
  }
  try {
    return parseSwarmKey(readFileSync(path, 'utf8'), path)
  } catch (err) {
    throw new DataDirError((err as Error).message)
  }
}

/**
 * Reads the loopback API token.
 *
 * @throws DataDirError when it is missing or empty
 */
export function loadApiToken(dir: string): string {
  const path = dataPaths(dir).apiToken
  const token = existsSync(path) ? readFileSync(path, 'utf8').trim() : ''
  if (token.length < 16) throw new DataDirError(`Cannot read ${path}: the API token is missing or too short; write a random string of at least 16 characters there`)
  return token
}

/**
 * Opens a data directory's database beside whatever else uses it (a running node: SQLite's WAL lets both in).
 * A stopped node's database is migrated, as its next start would; a running node's is not, since the node
 * running on it would find tables under it that it does not know.
 *
 * @throws DataDirError naming the file; when a running node is an older cairn, saying which binary to use
 */
export async function openDataDirStore(dir: string): Promise<Store> {
  const path = dataPaths(dir).database
  const pid = runningPid(dir)
  try {
    return await Store.open(path, { migrate: pid == null })
  } catch (err) {
    if (err instanceof SchemaBehindError) {
      // node.json is written once the start is over (the database migrated): without it the node is still starting.
      const info = readRunInfo(dir)
      if (info == null || info.pid !== pid)
        throw new DataDirError(
          `Cannot open ${path}: ${err.message}, and the node on ${dir} (pid ${pid}) is starting, which migrates it (or is an older cairn): run this command again once the node has started`
        )
      throw new DataDirError(
        `Cannot open ${path}: ${err.message}, and the node running on ${dir} (pid ${pid}) is an older cairn (${info.version}): run this command with that node's cairn, or stop the node and start it with this one (the start migrates the database)`
      )
    }
    throw new DataDirError(`Cannot open ${path}: ${(err as Error).message}`)
  }
}
