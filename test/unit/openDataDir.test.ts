import { describe, expect, test } from 'bun:test'
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { initDataDir } from '../../src/datadir/init.ts'
import { openDataDirStore } from '../../src/datadir/load.ts'
import { dataPaths } from '../../src/datadir/layout.ts'
import { lockDataDir, lockHolder } from '../../src/datadir/lock.ts'
import { writeRunInfo } from '../../src/datadir/runInfo.ts'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { MIGRATIONS, migrate } from '../../src/store/migrations.ts'
import { inProcessNode, newInProcessNode } from '../helpers/forge.ts'
import { tempDir, waitFor } from '../helpers/process.ts'

/** @returns the schema version recorded in the data directory's cairn.db */
async function schemaOf(dir: string): Promise<number> {
  const db = await openDatabase(dataPaths(dir).database)
  try {
    return db.get<{ v: number }>('SELECT max(version) AS v FROM schema_migrations')?.v ?? 0
  } finally {
    db.close()
  }
}

describe("a CLI verb opening a data directory's database", () => {
  test("leaves a running node's older schema alone, saying which cairn to use; migrates a stopped node's", async () => {
    using tmp = tempDir()
    const dir = tmp.path
    const p = dataPaths(dir)
    const older = await openDatabase(p.database)
    migrate(older, MIGRATIONS.slice(0, -1))
    older.close()
    // This test's process takes the directory, as a running node does.
    using node = { [Symbol.dispose]: lockDataDir(dir) }
    // Before its start is over (no node.json yet) the node may be this cairn, migrating the database: it is waited for.
    const said: string[] = []
    // The message says how long it waited, as measured: on a loaded machine 300 ms can take over half a second.
    const refused = await openDataDirStore(dir, { waitMs: 300, onWait: (line) => said.push(line) }).then(
      () => undefined,
      (err: Error) => err.message
    )
    expect(refused?.replace(/ after \d+ s /, ' after N s ')).toBe(
      `Cannot open ${p.database}: its schema version ${MIGRATIONS.length - 1} is older than this cairn's (${MIGRATIONS.length}), and the node on ${dir} (pid ${process.pid}) was still starting after N s without migrating it (an older cairn, or a migration that takes longer): run this command again once the node has started`
    )
    expect(said).toEqual([
      `${p.database} is at schema version ${MIGRATIONS.length - 1} of ${MIGRATIONS.length} and the node on ${dir} (pid ${process.pid}) is starting, which migrates it: waiting up to 0 s for it`
    ])
    writeRunInfo(dir, { peer_id: 'p', pid: process.pid, version: '0.0.1-older', addrs: [], http: '127.0.0.1:1', started_at: new Date().toISOString() })
    await expect(openDataDirStore(dir)).rejects.toThrow(
      `Cannot open ${p.database}: its schema version ${MIGRATIONS.length - 1} is older than this cairn's (${MIGRATIONS.length}), and the node running on ${dir} (pid ${process.pid}) is an older cairn (0.0.1-older): run this command with that node's cairn, or stop the node and start it with this one (the start migrates the database)`
    )
    expect(await schemaOf(dir)).toBe(MIGRATIONS.length - 1)
    // The node stops.
    node[Symbol.dispose]()
    const store = await openDataDirStore(dir)
    expect(store.schemaVersion()).toBe(MIGRATIONS.length)
    store.close()
  })

  test('waits for a starting node to migrate the database, then opens it without migrating anything itself', async () => {
    using tmp = tempDir()
    const dir = tmp.path
    const p = dataPaths(dir)
    const older = await openDatabase(p.database)
    migrate(older, MIGRATIONS.slice(0, -1))
    // This test's process takes the directory, as a node that is starting (no node.json yet).
    using _node = { [Symbol.dispose]: lockDataDir(dir) }
    const said: string[] = []
    const opening = openDataDirStore(dir, { onWait: (line) => said.push(line) })
    await waitFor('the verb to say that it waits', () => said.length > 0)
    expect(said).toEqual([
      `${p.database} is at schema version ${MIGRATIONS.length - 1} of ${MIGRATIONS.length} and the node on ${dir} (pid ${process.pid}) is starting, which migrates it: waiting up to 900 s for it`
    ])
    // The node's start migrates it.
    migrate(older)
    older.close()
    const store = await opening
    expect(store.schemaVersion()).toBe(MIGRATIONS.length)
    store.close()
    expect(said).toHaveLength(1)
  })

  test("cairn init run again on a running node's older database changes nothing and passes; with --owner it says which cairn to use", async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'node')
    const first = await initDataDir(dir, { newNetwork: true })
    // The schema of an older cairn: the last migration not recorded.
    const db = await openDatabase(dataPaths(dir).database)
    db.run('DELETE FROM schema_migrations WHERE version = ?', [MIGRATIONS.length])
    db.close()
    using _node = { [Symbol.dispose]: lockDataDir(dir) }
    writeRunInfo(dir, { peer_id: first.peerId, pid: process.pid, version: '0.0.1-older', addrs: [], http: '127.0.0.1:1', started_at: new Date().toISOString() })
    expect(await initDataDir(dir, { newNetwork: true })).toEqual({ peerId: first.peerId, created: false, owners: [first.peerId] })
    expect(await schemaOf(dir)).toBe(MIGRATIONS.length - 1)
    await expect(initDataDir(dir, { newNetwork: true, owners: ['12D3KooWA1111111111111111111111111111111111111111111'] })).rejects.toThrow('is an older cairn (0.0.1-older)')
    expect(await schemaOf(dir)).toBe(MIGRATIONS.length - 1)
  })
})

describe("a node's hold on its data directory", () => {
  test('a start that fails after taking the directory (a damaged cairn.db) frees it, and so does a stop; a second node is refused while one runs', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'node')
    await initDataDir(dir, { newNetwork: true })
    const database = readFileSync(dataPaths(dir).database)
    writeFileSync(dataPaths(dir).database, 'not a database, but long enough to be read as a damaged one '.repeat(100))
    for (const f of ['-wal', '-shm']) rmSync(`${dataPaths(dir).database}${f}`, { force: true })
    await expect(inProcessNode(dir)).rejects.toThrow(`Cannot open ${dataPaths(dir).database}`)
    expect(lockHolder(dir)).toBeUndefined()
    expect(readdirSync(dir).filter((f) => f.startsWith('run.lock'))).toEqual([])
    writeFileSync(dataPaths(dir).database, database)
    const node = await inProcessNode(dir)
    try {
      expect(lockHolder(dir)).toEqual({ pid: process.pid, here: true })
      await expect(inProcessNode(dir)).rejects.toThrow(`Cannot run: a node (pid ${process.pid}) is already running on ${dir}`)
      expect(lockHolder(dir)).toEqual({ pid: process.pid, here: true })
    } finally {
      await node.stop()
    }
    expect(lockHolder(dir)).toBeUndefined()
    expect(readdirSync(dir).filter((f) => f.endsWith('.lock') || f.startsWith('run.lock'))).toEqual(['instance.lock'])
  })

  test('a stop asked while the node is still starting stops it once the start is over and frees the directory', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'node')
    await initDataDir(dir, { newNetwork: true })
    const node = newInProcessNode(dir)
    const starting = node.start()
    const stopping = node.stop()
    try {
      await starting
      await stopping
      expect(node.status).toBe('stopped')
    } finally {
      await node.stop()
    }
    expect(lockHolder(dir)).toBeUndefined()
    expect(readdirSync(dir).filter((f) => f.startsWith('run.lock') || f === 'node.json')).toEqual([])
    // The directory is free for the next start in this process.
    const again = await inProcessNode(dir)
    await again.stop()
    expect(lockHolder(dir)).toBeUndefined()
  })

  test('a start asked while the node is starting returns once it has started', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'node')
    await initDataDir(dir, { newNetwork: true })
    const node = newInProcessNode(dir)
    const first = node.start()
    try {
      await node.start()
      expect(node.status).toBe('started')
      await first
    } finally {
      await node.stop()
    }
  })
})
