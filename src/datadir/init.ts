import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { UsageError } from '../errors.ts'
import { openDatabase } from '../runtime/sqlite.ts'
import { migrate } from '../store/migrations.ts'
import { openBlockDatabase } from '../store/blockstore.ts'
import { dataPaths } from './layout.ts'
import { loadIdentity } from './load.ts'
import { newSwarmKey, parseSwarmKey } from './swarmKey.ts'
import { tightenModes } from './modes.ts'

export interface InitOptions {
  /** a new random swarm key, a new network */
  newNetwork?: boolean
  /** the path of an existing network's swarm.key */
  swarmKeyFile?: string
}

export interface InitResult {
  peerId: string
  created: boolean
}

/**
 * Creates a node's data directory: identity, swarm.key, api.token, database and block store.
 * An existing data directory keeps its files; its modes are tightened (the directory 0700, files 0600).
 *
 * @returns the node's peer id, and whether anything was created
 * @throws UsageError when neither or both of newNetwork and swarmKeyFile are given, or the key file is bad
 */
export async function initDataDir(dir: string, options: InitOptions): Promise<InitResult> {
  const p = dataPaths(dir)
  if (existsSync(p.identity)) {
    const { peerId } = await loadIdentity(dir)
    tightenModes(dir)
    return { peerId: peerId.toString(), created: false }
  }
  if ((options.newNetwork === true) === (options.swarmKeyFile != null)) {
    throw new UsageError('cairn init needs exactly one of --new-network (start a new network) or --swarm-key FILE (join an existing one)')
  }
  let swarmKey: Uint8Array
  if (options.swarmKeyFile != null) {
    let text: string
    try {
      text = readFileSync(options.swarmKeyFile, 'utf8')
    } catch (err) {
      throw new UsageError(`Cannot read --swarm-key ${options.swarmKeyFile}: ${(err as Error).message}`)
    }
    try {
      swarmKey = parseSwarmKey(text, options.swarmKeyFile)
    } catch (err) {
      throw new UsageError((err as Error).message)
    }
  } else {
    swarmKey = newSwarmKey()
  }

  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const key = await generateKeyPair('Ed25519')
  // The swarm key and database go first: identity.key marks a complete directory.
  writeSecret(p.swarmKey, swarmKey)
  writeSecret(p.apiToken, new TextEncoder().encode(randomBytes(32).toString('base64url') + '\n'))
  const db = await openDatabase(p.database)
  migrate(db)
  db.close()
  const blocks = await openBlockDatabase(p.blocks)
  blocks.close()
  mkdirSync(p.datastore, { recursive: true, mode: 0o700 })
  writeSecret(p.identity, privateKeyToProtobuf(key))
  tightenModes(dir)
  return { peerId: peerIdFromPrivateKey(key).toString(), created: true }
}

function writeSecret(path: string, bytes: Uint8Array): void {
  writeFileSync(path, bytes, { mode: 0o600 })
  chmodSync(path, 0o600)
}
