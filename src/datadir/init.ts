import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { DataDirError, UsageError } from '../errors.ts'
import { OWNERS_KEY } from '../model/members.ts'
import { Store } from '../store/store.ts'
import { openDatabase } from '../runtime/sqlite.ts'
import { openBlockDatabase } from '../store/blockstore.ts'
import { dataPaths } from './layout.ts'
import { assertDatabase, loadIdentity, missingIdentity, nodeEntries, openDataDirStore, present, statOf } from './load.ts'
import { newSwarmKey, parseSwarmKey } from './swarmKey.ts'
import { readJoinFile } from './joinFile.ts'
import { tightenModes } from './modes.ts'
import { creationError, databaseError, notADirectory } from './problems.ts'

export interface InitOptions {
  /** a new random swarm key, a new network */
  newNetwork?: boolean
  /** the path of an existing network's swarm.key */
  swarmKeyFile?: string
  /** the network's owners (peer ids); with newNetwork the new node is the first one */
  owners?: readonly string[]
  /** the path of a join file (swarm key, owners, peers to connect to: see joinFile.ts) */
  joinFile?: string
}

export interface InitResult {
  peerId: string
  created: boolean
  /** the founding owners recorded (none: the node knows no owner, so it never applies membership changes) */
  owners: string[]
  /** whether owners were recorded in an existing data directory that had none */
  ownersRecorded?: boolean
}

/**
 * Creates a node's data directory: identity, swarm.key, api.token, database and block store.
 * An existing data directory keeps its files; its modes are tightened (the directory 0700, files 0600).
 *
 * @returns the node's peer id, and whether anything was created
 * @throws UsageError when neither or both of newNetwork and swarmKeyFile are given, or the key file is bad;
 * DataDirError when `dir` is a file, or cannot be created or written (naming the system's reason: a full disk, a read-only file system)
 */
export async function initDataDir(dir: string, options: InitOptions): Promise<InitResult> {
  const p = dataPaths(dir)
  for (const o of options.owners ?? []) {
    try {
      peerIdFromString(o)
    } catch {
      throw new UsageError(`Invalid --owner ${o}: expected a peer id such as 12D3KooW… (cairn id --data DIR prints a node's)`)
    }
  }
  if (statOf(dir, dir)?.isDirectory() === false) throw new DataDirError(notADirectory(dir))
  if (present(dir, p.identity)) {
    const { peerId } = await loadIdentity(dir)
    // Opening a missing cairn.db would make an empty one, which the next run would take for the node's own.
    assertDatabase(dir)
    tightenModes(dir)
    const wanted = [...new Set(options.owners ?? [])]
    if (wanted.length === 0) {
      // Nothing to write: the database is only read (neither migrated nor refused when a node of an older
      // cairn runs on it), so that an init run again by a deploy script after a new binary is installed passes.
      // A writable connection, though: a read-only one leaves -wal and -shm files behind it.
      try {
        const reader = new Store(await openDatabase(p.database))
        try {
          return { peerId: peerId.toString(), created: false, owners: readOwners(reader) }
        } finally {
          reader.close()
        }
      } catch (err) {
        throw databaseError(p.database, err)
      }
    }
    // Owners may be recorded once in a directory that has none (a node of a network that starts using the
    // membership changes); after that they change only through owners' signed changes.
    const store = await openDataDirStore(dir)
    try {
      const recorded = readOwners(store)
      if (sameSet(recorded, wanted)) return { peerId: peerId.toString(), created: false, owners: recorded }
      if (recorded.length > 0) {
        throw new UsageError(`${dir} already records the owners ${recorded.join(', ')}; owners change only through owners' signed changes (cairn members add PEER_ID --role owner)`)
      }
      store.meta.put(OWNERS_KEY, JSON.stringify(wanted))
      tightenModes(dir)
      return { peerId: peerId.toString(), created: false, owners: wanted, ownersRecorded: true }
    } finally {
      store.close()
    }
  }
  // A directory a node ran on has lost its identity, and a new one would take over its outbox and replace its
  // swarm key, token and owners; only an init cut short (nothing ran on it) is completed.
  const held = present(dir, dir) ? nodeEntries(dir) : []
  if (held.length > 0 && (await ranOn(dir, held))) throw new DataDirError(missingIdentity(dir, held, false))
  if ([options.newNetwork === true, options.swarmKeyFile != null, options.joinFile != null].filter(Boolean).length !== 1) {
    throw new UsageError('cairn init needs exactly one of --new-network (start a new network), --swarm-key FILE or --join FILE (join an existing one)')
  }
  let swarmKey: Uint8Array
  const join = options.joinFile != null ? readJoinFile(options.joinFile) : undefined
  if (join != null) {
    swarmKey = join.swarmKey
  } else if (options.swarmKeyFile != null) {
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
  const key = await generateKeyPair('Ed25519')

  const owners = [...new Set([...(options.newNetwork === true ? [peerIdFromPrivateKey(key).toString()] : []), ...(join?.owners ?? []), ...(options.owners ?? [])])]
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    // The swarm key and database go first: identity.key marks a complete directory, so that an init cut short
    // (a full disk) leaves one that the next init completes.
    writeSecret(p.swarmKey, swarmKey)
    writeSecret(p.apiToken, new TextEncoder().encode(randomBytes(32).toString('base64url') + '\n'))
    // The peers a join file names to connect to go to config.json, unless the operator wrote one already.
    if (join != null && join.bootstrap.length > 0 && !existsSync(p.config)) writeFileSync(p.config, JSON.stringify({ bootstrap: join.bootstrap }, null, 2) + '\n', { mode: 0o600 })
    const store = await Store.open(p.database)
    try {
      if (owners.length > 0) store.meta.put(OWNERS_KEY, JSON.stringify(owners))
    } finally {
      store.close()
    }
    const blocks = await openBlockDatabase(p.blocks)
    blocks.close()
    mkdirSync(p.datastore, { recursive: true, mode: 0o700 })
    writeSecret(p.identity, privateKeyToProtobuf(key))
    tightenModes(dir)
  } catch (err) {
    throw creationError(dir, err)
  }
  return { peerId: peerIdFromPrivateKey(key).toString(), created: true, owners }
}

/**
 * @returns whether a node ran on a data directory without identity.key, rather than an init stopping before it
 * wrote identity.key (which writes swarm.key, api.token, cairn.db and blocks.db, in that order, and nothing
 * else): a run leaves its lock files, a blocks.db without cairn.db is no init's, and a cairn.db that records
 * an own tree or a walked one (or cannot be read) was used
 * @param held the node's entries it holds (nodeEntries)
 */
async function ranOn(dir: string, held: readonly string[]): Promise<boolean> {
  const p = dataPaths(dir)
  if (held.some((name) => ['instance.lock', 'run.lock', 'node.json'].includes(name))) return true
  if (!held.includes('cairn.db')) return held.includes('blocks.db')
  let store: Store
  try {
    store = await Store.openReadOnly(p.database)
  } catch {
    return true
  }
  try {
    return store.outbox.root() != null || store.outbox.lastSeq() > 0 || store.remoteDirs.any()
  } catch (err) {
    // A cairn.db without its tables is one an init cut short was making (the disk full while it migrated).
    return !/no such table/.test((err as Error).message)
  } finally {
    store.close()
  }
}

function readOwners(store: Store): string[] {
  const text = store.meta.get(OWNERS_KEY)
  return text == null ? [] : (JSON.parse(text) as string[])
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x))
}

function writeSecret(path: string, bytes: Uint8Array): void {
  writeFileSync(path, bytes, { mode: 0o600 })
  chmodSync(path, 0o600)
}
