import { describe, expect, test } from 'bun:test'
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Database } from 'bun:sqlite'
import type { Subprocess } from 'bun'
import { cairn, cairnCommand, collectText, heldElsewhere, liveStranger, NodeProcess, ROOT, TEST_ENV, tempDir, waitFor } from './helpers/process.ts'
import { lockHolder } from '../src/datadir/lock.ts'
import { writeRunInfo } from '../src/datadir/runInfo.ts'
import { openDatabase } from '../src/runtime/sqlite.ts'
import { MIGRATIONS, migrate } from '../src/store/migrations.ts'

const LATEST = MIGRATIONS.length

/** What undoes each migration that can be the last: a newer one adds its undo here. */
const UNDO: Record<number, string> = { 14: 'DROP INDEX gaps_kind; ALTER TABLE gaps DROP COLUMN missing' }

/**
 * Takes a data directory's cairn.db back to the schema before the last migration, then begins that migration
 * in this process and holds it: a migration step as slow as the test wants, whose write lock another process meets.
 *
 * @returns a function that finishes the migration (commits it)
 */
function holdLastMigration(dir: string): { finish: () => void; [Symbol.dispose]: () => void } {
  const db = new Database(join(dir, 'cairn.db'))
  // What the last migration added is taken out again, with its record: the file is at the version before, as an
  // older cairn left it, and the migration runs over it as written.
  const undo = UNDO[LATEST]
  if (undo == null) throw new Error(`holdLastMigration needs what undoes migration ${LATEST} in UNDO`)
  db.exec(undo)
  db.exec(`DELETE FROM schema_migrations WHERE version = ${LATEST}`)
  db.exec('BEGIN IMMEDIATE')
  db.exec(MIGRATIONS[LATEST - 1])
  let open = true
  return {
    finish: () => {
      db.run('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)', [LATEST, Date.now()])
      db.exec('COMMIT')
      open = false
    },
    [Symbol.dispose]: () => {
      if (open) db.exec('ROLLBACK')
      db.close()
    }
  }
}

/** @returns the schema versions recorded in a data directory's cairn.db */
function versions(dir: string): number[] {
  const db = new Database(join(dir, 'cairn.db'), { readonly: true })
  try {
    return db
      .query<{ version: number }, []>('SELECT version FROM schema_migrations ORDER BY version')
      .all()
      .map((r) => r.version)
  } finally {
    db.close()
  }
}

/**
 * Whether this machine can start a process in a PID namespace of its own (root, util-linux's unshare): as a
 * container does. Without unshare (macOS, a minimal image) spawnSync throws, which is a no as well.
 */
const UNSHARE = (() => {
  try {
    return Bun.spawnSync(['unshare', '-p', '-f', '--mount-proc', 'true'], { stdout: 'ignore', stderr: 'ignore' }).exitCode === 0
  } catch {
    return false
  }
})()

/**
 * `cairn run` on `dir` as pid 1 of a PID namespace of its own, as in a container; killing it (SIGKILL to unshare,
 * which passes it on) is a crash of the node.
 */
function runInNamespace(dir: string): { proc: Subprocess<'ignore', 'ignore', 'pipe'>; stderr: () => string; [Symbol.asyncDispose]: () => Promise<void> } {
  const proc = Bun.spawn(
    ['unshare', '-p', '-f', '--mount-proc', '--kill-child', ...cairnCommand('binary', ['run', '--data', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--http', '127.0.0.1:0', '--log-format', 'json'])],
    { cwd: ROOT, env: { ...process.env, CAIRN_DATA: '', ...TEST_ENV }, stdin: 'ignore', stdout: 'ignore', stderr: 'pipe' }
  )
  const stderr = collectText(proc.stderr)
  return {
    proc,
    stderr: stderr.text,
    [Symbol.asyncDispose]: async () => {
      proc.kill('SIGKILL')
      await proc.exited
    }
  }
}

/** Waits until the node in a namespace has written node.json (pid 1 there) after `since`, and its endpoint answers. */
async function started(dir: string, node: { proc: Subprocess<'ignore', 'ignore', 'pipe'>; stderr: () => string }, since: string): Promise<{ http: string; started_at: string }> {
  return await waitFor(
    `the node in its namespace to start on ${dir}`,
    async () => {
      if (node.proc.exitCode != null) throw new Error(`cairn run exited with ${node.proc.exitCode}: ${node.stderr()}`)
      const info = JSON.parse(readFileSync(join(dir, 'node.json'), 'utf8')) as { pid: number; http: string; started_at: string }
      if (info.pid !== 1 || info.started_at === since) return undefined
      return (await fetch(`http://${info.http}/status`)).ok ? info : undefined
    },
    60_000
  )
}

describe(`nodes in PID namespaces of their own (containers) sharing one data directory${UNSHARE ? '' : " (skipped: needs root and util-linux's unshare -p)"}`, () => {
  test.skipIf(!UNSHARE)('the second refuses to start while the first runs and serves on; once the first is killed, the next starts', async () => {
    using tmp = tempDir()
    const node = await NodeProcess.init(tmp.path, 'n')
    await using first = runInNamespace(node.dir)
    const firstInfo = await started(node.dir, first, '')
    expect(readFileSync(join(node.dir, 'run.lock'), 'utf8')).toBe('1')
    {
      await using second = runInNamespace(node.dir)
      // Bounded, so that a second node that started (the bug) fails the test here and is killed.
      await waitFor('the second node to exit', () => second.proc.exitCode != null, 60_000)
      expect(second.proc.exitCode).toBe(1)
      await waitFor('the refusal on stderr', () => second.stderr().includes('\n'))
      expect(second.stderr()).toBe(
        `cairn run: Cannot run: a node is already running on ${node.dir} as pid 1 of another container or host sharing the directory; stop it first, or use another --data directory\n`
      )
    }
    expect(first.proc.exitCode).toBeNull()
    const published = await fetch(`http://${firstInfo.http}/v1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${node.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'test.lock', payload: { n: 1 } })
    })
    expect(published.status).toBe(201)
    expect(lockHolder(node.dir)).toEqual({ pid: 1, here: false })
    const doctor = await cairn(['doctor', '--data', node.dir, '--json'])
    expect(JSON.parse(doctor.stdout).lock).toBe('held by a node in another container or on another host sharing the directory (pid 1 there)')
    // A crash: run.lock, run.lock.start and node.json stay, naming pid 1 as the next node will be.
    first.proc.kill('SIGKILL')
    await first.proc.exited
    await waitFor('the kernel to free the lock of the killed node', () => lockHolder(node.dir) == null)
    expect(readFileSync(join(node.dir, 'run.lock'), 'utf8')).toBe('1')
    await using third = runInNamespace(node.dir)
    const thirdInfo = await started(node.dir, third, firstInfo.started_at)
    // What the first node published before it was killed, the next one serves.
    const types = async () =>
      ((await (await fetch(`http://${thirdInfo.http}/v1/events?limit=10`, { headers: { authorization: `Bearer ${node.token}` } })).json()) as { events: Array<{ type: string }> }).events.map(
        (e) => e.type
      )
    expect(await waitFor('the event to be served', async () => ((await types()).length > 0 ? await types() : undefined))).toEqual(['test.lock'])
  })
})

describe('the CLI and the node sharing a data directory', () => {
  test('a lock left by a crashed node whose pid another live process has now does not block cairn run, and doctor calls it stale', async () => {
    using tmp = tempDir()
    await using node = await NodeProcess.init(tmp.path, 'n')
    await node.start()
    const crashed = node.proc!.pid
    expect(await node.stop('SIGKILL')).not.toBe(0)
    const lock = join(node.dir, 'run.lock')
    // The pid is reused: an unrelated live process has it now. The files stay as the node wrote them, but for the pid.
    await using other = liveStranger()
    expect(readFileSync(lock, 'utf8')).toBe(String(crashed))
    const recorded = JSON.parse(readFileSync(`${lock}.start`, 'utf8'))
    expect(recorded.pid).toBe(crashed)
    writeFileSync(lock, String(other.pid))
    writeFileSync(`${lock}.start`, JSON.stringify({ ...recorded, pid: other.pid }))
    const doctor = await cairn(['doctor', '--data', node.dir, '--json'])
    expect(JSON.parse(doctor.stdout).lock).toBe('stale (left by a crash; the next run takes it over)')
    await node.start()
    expect(readFileSync(lock, 'utf8')).toBe(String(node.proc!.pid))
    expect(JSON.parse(readFileSync(`${lock}.start`, 'utf8')).pid).toBe(node.proc!.pid)
    expect(await node.stop()).toBe(0)
  })

  test('a verb asking the node says in one line that the node runs in another container or host (its loopback is not this one), or that it does not answer', async () => {
    using tmp = tempDir()
    const node = await NodeProcess.init(tmp.path, 'n')
    // This process holds the directory, as the node elsewhere does; run.lock names that node's pid there: here a
    // live process that started at another time than the one recorded.
    const lock = join(node.dir, 'run.lock')
    await using other = heldElsewhere(node.dir, node.peerId)
    const elsewhere = await cairn(['status', '--data', node.dir])
    expect(elsewhere.code).toBe(1)
    expect(elsewhere.stderr).toStartWith(
      `cairn status: The node on ${node.dir} runs in another container or on another host sharing the directory (pid ${other.pid} there): its endpoint 127.0.0.1:1 does not answer here (`
    )
    expect(elsewhere.stderr).toEndWith('); run this command where the node runs\n')
    expect(elsewhere.stderr.split('\n').length).toBe(2)
    // The holder here, not answering (stopping, hung).
    writeFileSync(lock, String(process.pid))
    writeFileSync(`${lock}.start`, other.ownStart)
    writeRunInfo(node.dir, { peer_id: node.peerId, version: '0.0.1', addrs: [], http: '127.0.0.1:1', started_at: new Date().toISOString(), pid: process.pid })
    const hung = await cairn(['status', '--data', node.dir])
    expect(hung.code).toBe(1)
    expect(hung.stderr).toStartWith(`cairn status: The node on ${node.dir} (pid ${process.pid}) does not answer at 127.0.0.1:1 (`)
    expect(hung.stderr).toEndWith(`): it may be stopping or hung; cairn doctor --data ${node.dir} says whether it runs\n`)
    expect(hung.stderr.split('\n').length).toBe(2)
  })

  test('a lock file of an older cairn (the pid alone) naming a live process still blocks cairn run', async () => {
    using tmp = tempDir()
    const node = await NodeProcess.init(tmp.path, 'n')
    await using other = liveStranger()
    writeFileSync(join(node.dir, 'run.lock'), `${other.pid}\n`, { mode: 0o600 })
    const r = await cairn(['run', '--data', node.dir, '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'])
    expect({ code: r.code, stderr: r.stderr }).toEqual({
      code: 1,
      stderr: `cairn run: Cannot run: a node (pid ${other.pid}) is already running on ${node.dir}; stop it first, or use another --data directory\n`
    })
  })

  test('a running node still blocks a second cairn run, naming its pid', async () => {
    using tmp = tempDir()
    await using node = await NodeProcess.init(tmp.path, 'n')
    await node.start()
    const r = await cairn(['run', '--data', node.dir, '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'])
    expect({ code: r.code, stderr: r.stderr }).toEqual({
      code: 1,
      stderr: `cairn run: Cannot run: a node (pid ${node.proc!.pid}) is already running on ${node.dir}; stop it first, or use another --data directory\n`
    })
    const doctor = await cairn(['doctor', '--data', node.dir, '--json'])
    expect(JSON.parse(doctor.stdout).lock).toBe(`held by running pid ${node.proc!.pid}`)
    expect(await node.stop()).toBe(0)
  })

  test('a node starting while another process runs a migration step longer than the busy timeout waits for it, saying so, then starts', async () => {
    using tmp = tempDir()
    await using node = await NodeProcess.init(tmp.path, 'n')
    using migration = holdLastMigration(node.dir)
    const starting = node.start()
    await waitFor(
      'the node to say that it waits for the migration',
      () => {
        if (node.proc?.exitCode != null) throw new Error(`cairn run exited: ${node.logs}`)
        return node.logs.includes('migration_wait')
      },
      60_000
    )
    const line = JSON.parse(node.logs.split('\n').find((l) => l.includes('migration_wait')) ?? '')
    expect(line.msg).toBe(
      `${join(node.dir, 'cairn.db')} is at schema version ${LATEST - 1} of ${LATEST} and another process holds its write lock (a migration under way, or another long write): waiting up to 900 s for it to finish`
    )
    migration.finish()
    await starting
    expect(versions(node.dir)).toEqual(MIGRATIONS.map((_, i) => i + 1))
    expect(await node.stop()).toBe(0)
  })

  test('a CLI verb on a stopped node meeting another process migrating the database waits for it on stderr, then runs', async () => {
    using tmp = tempDir()
    const node = await NodeProcess.init(tmp.path, 'n')
    using migration = holdLastMigration(node.dir)
    const proc = Bun.spawn(cairnCommand('binary', ['events', '--data', node.dir, '--json']), {
      env: { ...process.env, CAIRN_DATA: '', ...TEST_ENV },
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 'pipe'
    })
    try {
      const stderr = collectText(proc.stderr)
      await waitFor(
        'the verb to say that it waits for the migration',
        () => {
          if (proc.exitCode != null) throw new Error(`cairn events exited: ${stderr.text()}`)
          return stderr.text().includes('a migration under way')
        },
        60_000
      )
      expect(stderr.text()).toBe(
        `${join(node.dir, 'cairn.db')} is at schema version ${LATEST - 1} of ${LATEST} and another process holds its write lock (a migration under way, or another long write): waiting up to 900 s for it to finish\n`
      )
      migration.finish()
      expect(await proc.exited).toBe(0)
      await stderr.done
      expect(await new Response(proc.stdout).text()).toBe('')
      expect(versions(node.dir)).toEqual(MIGRATIONS.map((_, i) => i + 1))
    } finally {
      proc.kill()
      await proc.exited
    }
  })

  test('cairn doctor on a cairn.db of an older schema says so on a line of its own, with what to do, and skips the checks that need the new one', async () => {
    using tmp = tempDir()
    const node = await NodeProcess.init(tmp.path, 'n')
    const path = join(node.dir, 'cairn.db')
    // The database as an older cairn left it: its first five migrations.
    rmSync(path)
    const older = await openDatabase(path)
    migrate(older, MIGRATIONS.slice(0, 5))
    older.close()
    for (const file of [path, `${path}-wal`, `${path}-shm`]) if (existsSync(file)) chmodSync(file, 0o600)
    const skipped = (check: string) => ({
      check,
      ok: false,
      skipped: true,
      detail: `not checked: cairn.db's schema is at version 5, older than this cairn's (${LATEST})`,
      fix: "run cairn doctor again once cairn.db is at this cairn's schema (see cairn.db schema)"
    })
    const expected = (fix: string, lock: string) => ({
      code: 1,
      report: {
        healthy: false,
        lock,
        checks: [
          ...['data directory', 'identity.key', 'swarm.key', 'api.token', 'file modes', 'writable'].map((check) => ({ check, ok: true, detail: 'ok' })),
          { check: 'disk space', ok: true, detail: expect.stringMatching(/^\d+ of \d+ bytes free on the file system of /) },
          { check: 'cairn.db', ok: true, detail: 'ok' },
          { check: 'cairn.db schema', ok: false, detail: `version 5 is older than this cairn's (${LATEST}): the database is not migrated to this cairn yet`, fix },
          { check: 'blocks.db', ok: true, detail: 'ok' },
          skipped('outbox blocks'),
          skipped('synced trees')
        ]
      }
    })
    const doctor = async () => {
      const r = await cairn(['doctor', '--data', node.dir, '--json'])
      return { code: r.code, report: JSON.parse(r.stdout) }
    }
    expect(await doctor()).toEqual(
      expected(
        `start the node with this cairn once (cairn run --data ${node.dir} migrates the database at start), or run a command of this cairn that opens it (cairn events --data ${node.dir}); then run cairn doctor again`,
        'free'
      )
    )
    const text = await cairn(['doctor', '--data', node.dir])
    expect(text.code).toBe(1)
    expect(text.stdout).toContain(
      `FAIL  cairn.db schema  version 5 is older than this cairn's (${LATEST}): the database is not migrated to this cairn yet\n      → start the node with this cairn once`
    )
    expect(text.stdout).toContain(`skip  outbox blocks    not checked: cairn.db's schema is at version 5, older than this cairn's (${LATEST})\n`)
    // A node of an older cairn runs on it (an older cairn's run.lock names the pid alone).
    {
      await using other = liveStranger()
      writeFileSync(join(node.dir, 'run.lock'), `${other.pid}\n`, { mode: 0o600 })
      writeRunInfo(node.dir, { peer_id: node.peerId, pid: other.pid, version: '0.0.9', addrs: [], http: '127.0.0.1:1', started_at: new Date().toISOString() })
      expect(await doctor()).toEqual(
        expected(
          `the node running on ${node.dir} (pid ${other.pid}) is an older cairn (0.0.9): restart it with this cairn (its start migrates the database), or run that cairn's own doctor`,
          `held by running pid ${other.pid}`
        )
      )
    }
    // Once a command of this cairn migrated the stopped node's database, doctor finds it healthy.
    expect((await cairn(['events', '--data', node.dir])).code).toBe(0)
    const schemaOf = async () => {
      const r = await doctor()
      return { code: r.code, schema: r.report.checks.find((c: { check: string }) => c.check === 'cairn.db schema') }
    }
    expect(await schemaOf()).toEqual({ code: 0, schema: { check: 'cairn.db schema', ok: true, detail: `version ${LATEST}` } })
    // A newer cairn wrote it: with no node running, doctor says no cairn migrates back, not to ask "the node".
    const newer = await openDatabase(path)
    newer.run('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)', [LATEST + 1, Date.now()])
    newer.close()
    for (const file of [path, `${path}-wal`, `${path}-shm`]) if (existsSync(file)) chmodSync(file, 0o600)
    const version = (await cairn(['--version'])).stdout.trim().split(' ').at(-1)
    expect(await schemaOf()).toEqual({
      code: 1,
      schema: {
        check: 'cairn.db schema',
        ok: false,
        detail: `version ${LATEST + 1} is newer than this cairn knows (${LATEST}): a newer cairn wrote it`,
        fix: `use the newer cairn that wrote it (this is ${version}): no cairn migrates a database back; to run this one, restore cairn.db from a backup taken before that upgrade`
      }
    })
  })
})
