import { readFileSync, type Stats, statSync, writeSync } from 'node:fs'
import { basename, dirname } from 'node:path'
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import { DataDirError } from '../errors.ts'
import { MIGRATION_WAIT_MS, MIGRATIONS, SchemaAheadError, SchemaBehindError } from '../store/migrations.ts'
import { Store } from '../store/store.ts'
import { dataDirEntries, dataPaths } from './layout.ts'
import { lockHolder } from './lock.ts'
import { readRunInfo } from './runInfo.ts'
import { parseSwarmKey } from './swarmKey.ts'
import { databaseError, isPermissionDenied, notADirectory, permissionDenied, unwritableAdvice, whyNotWritable } from './problems.ts'
import { versionText } from '../version.ts'

/**
 * Checks that `dir` is an initialised data directory, each of whose entries is what it should be (a file, or
 * the datastore directory), so that none fails later inside a library with a stack trace.
 *
 * @throws DataDirError saying how to create one, or naming the entry that is wrong and what to do
 */
export function assertDataDir(dir: string): void {
  assertInitialised(dir)
  const [wrong] = wrongEntries(dir)
  if (wrong != null) throw new DataDirError(wrong)
}

/**
 * @returns whether `path` exists: false only when the system says it does not (ENOENT, ENOTDIR), so that an
 * entry this user may not see is never taken for a missing one
 * @throws DataDirError saying that permission is denied (naming the path, the user and the fix) on EACCES or EPERM
 */
export function present(dir: string, path: string): boolean {
  return statOf(dir, path) != null
}

/**
 * @returns the entry's stats, undefined when the system says it does not exist (see present)
 * @throws DataDirError saying that permission is denied on EACCES or EPERM
 */
export function statOf(dir: string, path: string): Stats | undefined {
  try {
    return statSync(path)
  } catch (err) {
    const code = (err as { code?: unknown }).code
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined
    if (isPermissionDenied(err)) throw new DataDirError(permissionDenied(dir, path, err))
    throw err
  }
}

/**
 * @returns the entries of a data directory without identity.key that only a node's directory holds: its
 * databases, keys and token, and what a run leaves (instance.lock, node.json)
 */
export function nodeEntries(dir: string): string[] {
  const p = dataPaths(dir)
  return [p.database, p.blocks, p.swarmKey, p.apiToken, p.instance, p.lock, p.runInfo].filter((path) => present(dir, path)).map((path) => basename(path))
}

/**
 * The message for a data directory that holds a node's files but no identity.key: the identity is lost, not
 * the directory uninitialised, and a new one (cairn init) over this cairn.db would publish its outbox, seqs
 * every peer has, under another peer id.
 *
 * @param held the entries it holds (nodeEntries)
 * @param initCutShort whether to add that an init cut short before it wrote identity.key is completed by running it again
 */
export function missingIdentity(dir: string, held: readonly string[], initCutShort: boolean): string {
  return (
    `${dir} holds ${held.join(', ')} but no identity.key: this node's identity is missing. Restore identity.key from a backup (docs/operations.md, "Backups"); ` +
    `a new identity over this cairn.db would publish its outbox under another peer id. To start over as a new node, use a new directory (cairn init --data NEWDIR --join FILE)` +
    (initCutShort ? `; if a cairn init on ${dir} failed before it wrote identity.key and no node ever ran on it, run that cairn init again` : '')
  )
}

/**
 * Checks that `dir` is an initialised data directory (it has identity.key), its entries unchecked.
 *
 * @throws DataDirError saying how to create one; that the identity is missing when the directory holds a node's
 * other files; that permission is denied when this user may not see an entry
 */
export function assertInitialised(dir: string): void {
  const st = statOf(dir, dir)
  if (st == null) throw new DataDirError(`No data directory at ${dir}: create one with cairn init --data ${dir} --new-network (or --swarm-key FILE to join a network)`)
  if (!st.isDirectory()) throw new DataDirError(notADirectory(dir))
  if (!present(dir, dataPaths(dir).identity)) {
    const held = nodeEntries(dir)
    if (held.length > 0) throw new DataDirError(missingIdentity(dir, held, true))
    throw new DataDirError(`${dir} is not a cairn data directory (no identity.key): create one with cairn init --data ${dir} --new-network`)
  }
}

/** @returns for each entry of the data directory that is a file where a directory belongs or the reverse, what is wrong and what to do */
export function wrongEntries(dir: string): string[] {
  return dataDirEntries(dir)
    .filter((entry) => {
      const st = statOf(dir, entry.path)
      return st != null && st.isDirectory() !== entry.directory
    })
    .map((entry) => `${entry.path} is ${entry.directory ? 'not a directory' : 'a directory'}, where cairn keeps ${entry.directory ? 'a directory' : 'a file'}: ${entry.fix}`)
}

/**
 * Checks that an initialised data directory still has its database: `cairn init` writes it before identity.key,
 * and opening a missing one would make an empty one, whose outbox publishes this producer's seqs from 1 again.
 *
 * @throws DataDirError saying what is lost and what to do
 */
export function assertDatabase(dir: string): void {
  const path = dataPaths(dir).database
  if (present(dir, path)) return
  throw new DataDirError(
    `${path} is missing: it holds this node's outbox (the seqs its producer published) and its plugins' state, and a new one would publish from seq 1 again, which every peer already has and refuses. Restore cairn.db and blocks.db from the same backup (docs/operations.md, "Backups"), or start over as a new node in another directory (cairn init --data NEWDIR --join FILE)`
  )
}

/**
 * Checks that a data directory whose cairn.db records files this node published or a walked tree still has
 * its blocks.db: opening a missing one makes an empty one, and the node would run on heads whose blocks are gone
 * (rebuilding only the commits after the last sync, as after a power cut), serving and exporting none of them.
 * A cairn.db that records neither (a node that never published nor synced) starts with an empty one.
 *
 * @throws DataDirError saying what is lost and what to do
 */
export function assertBlockStore(dir: string, store: Store): void {
  const path = dataPaths(dir).blocks
  const problem = present(dir, path) ? undefined : missingBlockStore(path, store)
  if (problem != null) throw new DataDirError(problem)
}

/**
 * @returns what a missing blocks.db loses, as a refusal, when cairn.db records a tree whose blocks it held: files
 * this node published, or trees of other producers it walked; undefined when it records neither (a node that never
 * started, or never published nor synced: its empty tree is made again), and a new blocks.db is made
 */
export function missingBlockStore(path: string, store: Store): string | undefined {
  const published = store.outbox.lastSeq() > 0
  if (!published && !store.remoteDirs.any()) return undefined
  const restore =
    'Restore blocks.db and cairn.db from the same backup (docs/operations.md, "Backups"), or start over as a new node in another directory (cairn init --data NEWDIR --join FILE; an owner adds its new peer id)'
  return published
    ? `${path} is missing: it holds the files this node published, which no other place has while they are unpruned, and the trees it synced; a node started without it would announce a tree whose blocks are gone. ${restore}`
    : `${path} is missing: it holds the blocks of the other producers' trees this node synced, which cairn.db records as walked, so that its walks would not fetch them again. This node published nothing: starting over loses none of its own. ${restore}`
}

/**
 * Reads the node's Ed25519 identity.
 *
 * @throws DataDirError when it is missing or damaged
 */
export async function loadIdentity(dir: string): Promise<{ privateKey: PrivateKey; peerId: PeerId }> {
  assertInitialised(dir)
  const path = dataPaths(dir).identity
  try {
    const privateKey = privateKeyFromProtobuf(readFileSync(path))
    return { privateKey, peerId: peerIdFromPrivateKey(privateKey) }
  } catch (err) {
    if (isPermissionDenied(err)) throw new DataDirError(permissionDenied(dir, path, err))
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
  if (!present(dir, path)) {
    throw new DataDirError(`Cannot start without a swarm key: ${path} is missing; copy the network's swarm.key there`)
  }
  try {
    return parseSwarmKey(readFileSync(path, 'utf8'), path)
  } catch (err) {
    if (isPermissionDenied(err)) throw new DataDirError(permissionDenied(dir, path, err))
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
  let token = ''
  try {
    token = present(dir, path) ? readFileSync(path, 'utf8').trim() : ''
  } catch (err) {
    if (isPermissionDenied(err)) throw new DataDirError(permissionDenied(dir, path, err))
    throw err
  }
  if (token.length < 16) throw new DataDirError(`Cannot read ${path}: the API token is missing or too short; write a random string of at least 16 characters there`)
  return token
}

/** How often a verb looks whether a starting node has migrated the database. */
const STARTING_POLL_MS = 200

/** Writes a line to stderr at once: a wait for another process's migration blocks this thread (SQLite's busy wait). */
function toStderr(line: string): void {
  writeSync(2, `${line}\n`)
}

/**
 * Opens a stopped node's database read-only, for a caller that only reads, when this process cannot write it (a
 * read-only file system, another user's file or directory): at this cairn's schema only, since an older one
 * cannot be migrated there and its tables are not what this cairn reads.
 *
 * @param failed the error of the writable open, which says why it could not be written
 * @throws DataDirError naming the file: the writable open's error when the read-only open fails too, else the
 * schema version that is not this cairn's
 */
async function openStoppedReadOnly(path: string, failed: unknown): Promise<Store> {
  let store: Store
  try {
    store = await Store.openReadOnly(path)
  } catch {
    throw databaseError(path, failed)
  }
  let version: number
  try {
    version = store.schemaVersion()
  } catch (err) {
    store.close()
    throw databaseError(path, err)
  }
  if (version === MIGRATIONS.length) return store
  store.close()
  if (version > MIGRATIONS.length) throw databaseError(path, new SchemaAheadError(path, version, MIGRATIONS.length))
  throw new DataDirError(
    `Cannot open ${path}: ${new SchemaBehindError(version, MIGRATIONS.length).message}, and it cannot be migrated where it cannot be written; ${unwritableAdvice(path, failed) ?? 'give this user write access to it, then run this again'} (or run this command with the cairn that wrote it)`
  )
}

/**
 * Opens a data directory's database beside whatever else uses it (a running node: SQLite's WAL lets both in).
 * A stopped node's database is migrated, as its next start would; a running node's is not, since the node
 * running on it would find tables under it that it does not know. A migration under way (a node starting with
 * a newer cairn, another verb migrating) is waited for, up to `options.waitMs`, saying so once.
 *
 * @param options.onWait where the line saying that it waits goes (default: stderr)
 * @param options.waitMs how long to wait in all for another process's migration (default MIGRATION_WAIT_MS)
 * @param options.onlyReads the caller never writes: a stopped node's database that this process cannot write (a
 * read-only file system, another user's) is opened read-only instead, as `cairn sql` and `cairn doctor` open it,
 * when it is at this cairn's schema
 * @throws DataDirError naming the file; when a running node is an older cairn, saying which binary to use; when
 * the wait for a migration ran out, naming what it waited for
 */
export async function openDataDirStore(dir: string, options: { onWait?: (line: string) => void; waitMs?: number; onlyReads?: boolean } = {}): Promise<Store> {
  assertDatabase(dir)
  const path = dataPaths(dir).database
  const onWait = options.onWait ?? toStderr
  const waitMs = options.waitMs ?? MIGRATION_WAIT_MS
  const since = Date.now()
  let told = false
  for (;;) {
    // A node whose run.lock names no pid (starting or stopping this instant) runs all the same.
    const holder = lockHolder(dir)
    const pid = holder?.pid ?? 'unknown'
    try {
      return await Store.open(path, {
        migrate: holder == null,
        migrationWaitMs: Math.max(1, since + waitMs - Date.now()),
        onMigrationWait: (line) => {
          if (!told) onWait(line)
          told = true
        }
      })
    } catch (err) {
      if (err instanceof SchemaBehindError && holder != null) {
        // node.json is written once the start is over (the database migrated): without it the node is still starting.
        const info = readRunInfo(dir)
        if (info != null && info.pid === pid) {
          throw new DataDirError(
            `Cannot open ${path}: ${err.message}, and the node running on ${dir} (pid ${pid}) is an older cairn (${versionText(info)}): run this command with that node's cairn, or stop the node and start it with this one (the start migrates the database)`
          )
        }
        const waited = Date.now() - since
        if (waited >= waitMs) {
          throw new DataDirError(
            `Cannot open ${path}: ${err.message}, and the node on ${dir} (pid ${pid}) was still starting after ${Math.round(waited / 1000)} s without migrating it (an older cairn, or a migration that takes longer): run this command again once the node has started`
          )
        }
        if (!told) {
          onWait(`${path} is at schema version ${err.current} of ${err.latest} and the node on ${dir} (pid ${pid}) is starting, which migrates it: waiting up to ${Math.round(waitMs / 1000)} s for it`)
          told = true
        }
        await new Promise((resolve) => setTimeout(resolve, STARTING_POLL_MS))
        continue
      }
      // Nothing else writes it either (no node holds the lock): a read-only file reads the same.
      if (options.onlyReads === true && holder == null && (whyNotWritable(path) ?? whyNotWritable(dirname(path))) != null) return await openStoppedReadOnly(path, err)
      throw databaseError(path, err)
    }
  }
}
