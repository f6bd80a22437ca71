import type { PeerId, PrivateKey } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { loadAccessRules, type AccessRules } from '../config/access.ts'
import type { NodeConfig } from '../config/catalog.ts'
import { dataPaths } from '../datadir/layout.ts'
import { assertBlockStore, assertDatabase, assertDataDir, loadApiToken, loadIdentity, loadSwarmKey } from '../datadir/load.ts'
import { lockDataDir } from '../datadir/lock.ts'
import { tightenModes } from '../datadir/modes.ts'
import { databaseError } from '../datadir/problems.ts'
import { networkId } from '../datadir/swarmKey.ts'
import { DataDirError, UsageError } from '../errors.ts'
import { openBlockDatabase, SqliteBlockstore } from '../store/blockstore.ts'
import { Store } from '../store/store.ts'
import { recoverOutboxBlocks } from '../publish/recover.ts'

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|::1)$/

/** @returns whether a host name or address is on the loopback interface */
function isLoopback(host: string): boolean {
  return LOOPBACK.test(host)
}

/** What a node reads from its data directory before anything starts. */
export interface OpenedDataDir {
  privateKey: PrivateKey
  peerId: PeerId
  swarmKey: Uint8Array
  token: string
  network: string
  /** where libp2p keeps its datastore */
  datastorePath: string
  access: AccessRules
  store: Store
  blocks: SqliteBlockstore
  /** the blocks of the own tree that the start rebuilt from cairn.db (lost by a power cut), and after which seq */
  recovered: { rebuilt: number; after: number }
  /** closes both databases and releases the data directory's lock */
  close: () => void
}

/**
 * Checks the settings a node cannot start without, locks the data directory and opens what is in it:
 * identity, swarm key, API token, access rules, `cairn.db` and `blocks.db`; then makes sure blocks.db holds
 * the blocks of the own head's tree that the last commits wrote, rebuilding them from cairn.db if needed.
 *
 * @throws UsageError for a non-loopback --http without --force-http or a bad multiaddr; ConfigError for bad
 * access rules; DataDirError for a missing or damaged data directory, or when another process's migration of cairn.db
 * outlasted the wait (options.onMigrationWait is told when the wait begins); DataDirBusyError when another node holds it;
 * OutboxBlocksLostError when blocks of the own tree are missing and cannot be rebuilt
 */
export async function openDataDir(config: NodeConfig, options: { onMigrationWait?: (line: string) => void } = {}): Promise<OpenedDataDir> {
  if (!isLoopback(config.http.host) && !config.forceHttp) {
    throw new UsageError(`Cannot listen on --http ${config.http.host}:${config.http.port}: the endpoint is loopback-only (127.0.0.1 or ::1); pass --force-http to bind another address on purpose`)
  }
  for (const a of [...config.listen, ...config.bootstrap]) {
    try {
      multiaddr(a)
    } catch (err) {
      throw new UsageError(`Invalid multiaddr ${a}: ${(err as Error).message}`)
    }
  }
  assertDataDir(config.data)
  assertDatabase(config.data)
  const paths = dataPaths(config.data)
  const release = lockDataDir(config.data)
  let store: Store | undefined
  try {
    tightenModes(config.data)
    const { privateKey, peerId } = await loadIdentity(config.data)
    const swarmKey = loadSwarmKey(config.data)
    const token = loadApiToken(config.data)
    const network = await networkId(swarmKey)
    const access = loadAccessRules(config.members, config.policy, config.data)
    try {
      store = await Store.open(paths.database, { onMigrationWait: options.onMigrationWait })
    } catch (err) {
      if ((err as Error).name === 'MigrationWaitError') throw new DataDirError(`Cannot open ${paths.database}: ${(err as Error).message}`)
      // Its message names the file already, and says what to do.
      if ((err as Error).name === 'SchemaAheadError') throw new DataDirError((err as Error).message)
      throw databaseError(paths.database, err, 'the database is damaged or from a newer cairn: restore it from a backup (see docs/operations.md)')
    }
    assertBlockStore(config.data, store)
    let blocks: SqliteBlockstore | undefined
    try {
      blocks = new SqliteBlockstore(await openBlockDatabase(paths.blocks))
      blocks.check()
    } catch (err) {
      if ((err as Error).name === 'DataDirError') throw err
      throw databaseError(paths.blocks, err, 'restore it and cairn.db from the same backup (docs/operations.md, "Backups")')
    }
    const recovered = await recoverOutboxBlocks(store, blocks, peerId.toString()).catch((err: unknown) => {
      blocks?.db.close()
      throw err
    })
    // After the databases opened, so that their -wal and -shm files exist and are tightened too.
    tightenModes(config.data)
    const opened = store
    const openedBlocks = blocks
    return {
      privateKey,
      peerId,
      swarmKey,
      token,
      network,
      datastorePath: paths.datastore,
      access,
      store: opened,
      blocks: openedBlocks,
      recovered,
      close: () => {
        // The lock goes whatever the databases' close throws: a node that failed to stop still frees the directory.
        try {
          openedBlocks.db.close()
          opened.close()
        } finally {
          release()
        }
      }
    }
  } catch (err) {
    try {
      store?.close()
    } finally {
      release()
    }
    throw err
  }
}
