import { describe, expect, test } from 'bun:test'
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdirSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Database } from 'bun:sqlite'
import { cairn, EXAMPLES, invite, NodeProcess, publishMany, tempDir, waitFor } from '../helpers/process.ts'
import { appliedCounts, eventCount, query } from '../helpers/db.ts'
import { inProcessNode } from '../helpers/forge.ts'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { SqliteBlockstore } from '../../src/store/blockstore.ts'

/** Deletes blocks from a stopped node's blocks.db, as a lost WAL or a damaged disk would. */
async function deleteBlocks(dir: string, cids: string[] | ((blocks: SqliteBlockstore) => string[])): Promise<void> {
  const blocks = new SqliteBlockstore(await openDatabase(join(dir, 'blocks.db')))
  try {
    blocks.remove(typeof cids === 'function' ? cids(blocks) : cids)
  } finally {
    blocks.db.close()
  }
}

/** Scale: CI-sized by default; FAULTS_SCALE=10 for the on-demand run (see RELIABILITY.md). */
const SCALE = Number(process.env.FAULTS_SCALE ?? 1)

/** One line per scenario, collected into RELIABILITY.md. */
function report(scenario: string, figures: Record<string, number | string>): void {
  console.log(`FAULT ${JSON.stringify({ scenario, ...figures })}`)
}

describe('faults', () => {
  test('publisher SIGKILLed during a burst: every acknowledged event survives and reaches the peer, seq has no holes', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    await a.start()
    await b.start(['--bootstrap', a.addrs[0]])
    const acked = new Set<string>()
    let attempted = 0
    const burst = Promise.all(
      Array.from({ length: 32 }, async () => {
        for (;;) {
          attempted++
          try {
            acked.add((await a.publish({ type: 'test.burst', payload: { n: attempted } })).event_id)
          } catch {
            return
          }
        }
      })
    )
    await waitFor('some acknowledged publishes', () => acked.size >= 300 * SCALE, 60_000, 5)
    await a.stop('SIGKILL')
    await burst
    const doctor = await cairn(['doctor', '--data', a.dir])
    expect(doctor.stdout).toContain('ok    outbox blocks')
    // a restarts on a new port, so it dials b (b's bootstrap address for a is stale)
    await a.start(['--bootstrap', b.addrs[0]])
    const seqs = query<{ seq: number }>(a.dir, 'SELECT seq FROM outbox ORDER BY seq').map((r) => r.seq)
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1))
    const ids = new Set(query<{ event_id: string }>(a.dir, 'SELECT event_id FROM events').map((r) => r.event_id))
    const lost = [...acked].filter((id) => !ids.has(id)).length
    expect(lost).toBe(0)
    await waitFor('the peer to hold every event of a', () => eventCount(b.dir) === ids.size, 60_000)
    report('publisher crash', {
      published: attempted,
      acknowledged: acked.size,
      committed: ids.size,
      delivered: eventCount(b.dir),
      lost,
      doubly_applied: 0,
      faults: 'SIGKILL of the publisher during 32 concurrent publishers'
    })
  })

  test('power cut: blocks.db loses its unsynced WAL, the restart rebuilds the lost blocks from cairn.db, nothing acknowledged is lost and a peer syncs the whole tree', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    await a.start()
    const acked = new Set<string>()
    let stopped = false
    const burst = Promise.all(
      Array.from({ length: 16 }, async (_, w) => {
        for (let i = 0; !stopped; i++) {
          try {
            acked.add((await a.publish({ type: 'test.power', payload: { w, i, text: 'zoë 🧭' } })).event_id)
          } catch {
            return
          }
        }
      })
    )
    await waitFor('some acknowledged publishes', () => acked.size >= 300 * SCALE, 60_000, 5)
    await a.stop('SIGKILL')
    stopped = true
    await burst
    const last = query<{ seq: number; cid: string }>(a.dir, 'SELECT seq, cid FROM outbox ORDER BY seq DESC LIMIT 1')[0]
    const lastSeq = last.seq
    const durableThrough = (): number => Number(query<{ value: string }>(a.dir, "SELECT value FROM meta WHERE key = 'outbox_blocks_durable_through'")[0]?.value ?? 0)
    // A power cut keeps what blocks.db synced (its checkpointed database file) and may drop its WAL: every
    // block written after the last sync. cairn.db's WAL was synced by each commit and stays.
    for (const f of ['blocks.db-wal', 'blocks.db-shm']) rmSync(join(a.dir, f), { force: true })
    if (durableThrough() >= lastSeq) {
      // The kill came right after the once-a-second sync, which left no tail: lose the last commit's file
      // as the WAL would have taken it a moment later, so that the rebuild is always what is tested.
      await deleteBlocks(a.dir, [last.cid])
      const db = new Database(join(a.dir, 'cairn.db'))
      db.run("UPDATE meta SET value = min(CAST(value AS INTEGER), ?) WHERE key = 'outbox_blocks_durable_through'", [lastSeq - 1])
      db.close()
    }
    const through = durableThrough()
    expect(through).toBeLessThan(lastSeq)
    const before = await cairn(['doctor', '--data', a.dir])
    expect(before.stdout).toContain(`of the commits after seq ${through} were lost before blocks.db synced them`)
    expect(before.stdout).toContain('ok    outbox blocks')
    expect(before.stdout).toContain('ok    synced trees')

    await a.start()
    expect(a.logs).toContain('outbox_blocks_rebuilt')
    const ids = new Set(query<{ event_id: string }>(a.dir, 'SELECT event_id FROM events').map((r) => r.event_id))
    const lost = [...acked].filter((id) => !ids.has(id)).length
    expect(lost).toBe(0)
    const after = await cairn(['doctor', '--data', a.dir])
    expect(after.stdout).toMatch(/ok {4}outbox blocks +ok\n/)
    expect((await a.status()).verdict).toBe('healthy')
    await b.start(['--bootstrap', a.addrs[0]])
    await waitFor('the peer to hold every event of a', () => eventCount(b.dir) === ids.size, 60_000)
    report('power cut of blocks.db', {
      published: acked.size,
      acknowledged: acked.size,
      committed: ids.size,
      delivered: eventCount(b.dir),
      lost,
      doubly_applied: 0,
      faults: `SIGKILL during 16 concurrent publishers, then blocks.db's WAL removed: the commits after seq ${through} of ${lastSeq} rebuilt at start`
    })
  })

  test('a lost block of the last commits that cairn.db cannot rebuild stops the start with one line naming it, and cairn doctor says the same', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await a.start()
    await publishMany(a, 20, (i) => ({ type: 'test.unrebuildable', payload: { i } }))
    await a.stop('SIGKILL')
    const last = query<{ seq: number; cid: string }>(a.dir, 'SELECT seq, cid FROM outbox ORDER BY seq DESC LIMIT 1')[0]
    for (const f of ['blocks.db-wal', 'blocks.db-shm']) rmSync(join(a.dir, f), { force: true })
    // The last file lost with the WAL (it is, unless the once-a-second sync ran between the last commit and the kill: then as if it had not) ...
    await deleteBlocks(a.dir, [last.cid])
    // ... and its events row gone, as events-retention could have done.
    const db = new Database(join(a.dir, 'cairn.db'))
    db.run('DELETE FROM events WHERE seq = ?', [last.seq])
    db.run("UPDATE meta SET value = min(CAST(value AS INTEGER), ?) WHERE key = 'outbox_blocks_durable_through'", [last.seq - 1])
    db.close()
    const run = await cairn(['run', '--data', a.dir, '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'])
    expect(run.code).toBe(1)
    expect(run.stderr).toContain(`Cannot start: the own outbox tree of head seq ${last.seq} misses`)
    expect(run.stderr).toContain(`file of seq ${last.seq} (${last.cid}): its events row is gone`)
    expect(run.stderr).not.toContain('    at ')
    const doctor = await cairn(['doctor', '--data', a.dir])
    expect(doctor.stdout).toContain('FAIL  outbox blocks')
    expect(doctor.stdout).toContain(`cannot be rebuilt from cairn.db: file of seq ${last.seq}: its events row is gone`)
  })

  test('consumer SIGKILLed again and again during an ingest ends with exactly N rows, each applied once', async () => {
    const n = 1000 * SCALE
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    await a.start(['--plugins', EXAMPLES])
    await b.start(['--plugins', EXAMPLES, '--bootstrap', a.addrs[0]])
    const publishing = publishMany(a, n, invite, 8)
    let kills = 0
    for (let k = 1; k <= 3; k++) {
      await waitFor(`b to apply ${(k * n) / 5}`, () => appliedCounts(b.dir).rows >= (k * n) / 5, 120_000, 20)
      await b.stop('SIGKILL')
      kills++
      await b.start(['--plugins', EXAMPLES, '--bootstrap', a.addrs[0]])
    }
    await publishing
    await waitFor(`${n} applied on b`, () => appliedCounts(b.dir).rows === n, 120_000)
    expect(appliedCounts(b.dir)).toEqual({ rows: n, once: n, doubled: 0 })
    expect(eventCount(b.dir)).toBe(n)
    report('consumer crash', {
      published: n,
      acknowledged: n,
      delivered: eventCount(b.dir),
      lost: n - eventCount(b.dir),
      doubly_applied: appliedCounts(b.dir).doubled,
      faults: `${kills} x SIGKILL of the consumer mid-ingest`
    })
  })

  test('restart loops while traffic flows lose nothing', async () => {
    const loops = 5 * SCALE
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    await a.start(['--plugins', EXAMPLES])
    await b.start(['--plugins', EXAMPLES, '--bootstrap', a.addrs[0]])
    let published = 0
    for (let i = 0; i < loops; i++) {
      await publishMany(a, 50, (j) => invite(i * 50 + j), 8)
      published += 50
      expect(await b.stop(i % 2 === 0 ? 'SIGTERM' : 'SIGINT')).toBe(0)
      await publishMany(a, 20, (j) => invite(100_000 + i * 20 + j), 8)
      published += 20
      await b.start(['--plugins', EXAMPLES, '--bootstrap', a.addrs[0]])
    }
    await waitFor('everything on b', () => appliedCounts(b.dir).rows === published, 60_000)
    expect(appliedCounts(b.dir)).toEqual({ rows: published, once: published, doubled: 0 })
    report('restart loop', {
      published,
      acknowledged: published,
      delivered: eventCount(b.dir),
      lost: published - eventCount(b.dir),
      doubly_applied: 0,
      faults: `${loops} clean stops and starts of the consumer while the producer publishes`
    })
  })

  test('a partitioned node converges after healing, with no duplicates', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    await using c = await NodeProcess.init(tmp.path, 'c', { network: a })
    await a.start(['--plugins', EXAMPLES])
    await b.start(['--plugins', EXAMPLES, '--bootstrap', a.addrs[0]])
    await c.start(['--plugins', EXAMPLES, '--bootstrap', a.addrs[0]])
    await publishMany(a, 50, invite, 8)
    await waitFor('c to have the first 50', () => eventCount(c.dir) === 50, 60_000)
    await c.stop()
    await publishMany(a, 100 * SCALE, (i) => invite(1000 + i), 8)
    await publishMany(b, 100 * SCALE, (i) => invite(5000 + i), 8)
    const total = 50 + 200 * SCALE
    await c.start(['--plugins', EXAMPLES, '--bootstrap', b.addrs[0]])
    for (const n of [a, b, c]) await waitFor(`${total} on ${n.dir}`, () => appliedCounts(n.dir).rows === total, 60_000)
    for (const n of [a, b, c]) expect(appliedCounts(n.dir)).toEqual({ rows: total, once: total, doubled: 0 })
    report('partition and heal', {
      published: total,
      acknowledged: total,
      delivered: eventCount(c.dir),
      lost: total - eventCount(c.dir),
      doubly_applied: 0,
      faults: 'one of three nodes stopped while the other two publish, then healed through another peer'
    })
  })

  test('a stuck peer that never answers bitswap does not stall sync from the others', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    const stuckDir = await NodeProcess.init(tmp.path, 'stuck', { network: a })
    await a.start()
    const stuck = await inProcessNode(stuckDir.dir, { bootstrap: [a.addrs[0]] })
    try {
      // The stuck peer takes bitswap requests and never answers them.
      const protocols = stuck.ipfs.libp2p.getProtocols().filter((p) => p.startsWith('/ipfs/bitswap'))
      await stuck.ipfs.libp2p.unhandle(protocols)
      await stuck.ipfs.libp2p.handle(protocols, () => {}, { force: true })
      await b.start(['--bootstrap', stuck.ipfs.libp2p.getMultiaddrs()[0].toString(), '--bootstrap', a.addrs[0]])
      await waitFor('b connected to both', async () => (await b.status()).peers.length >= 2, 30_000)
      const started = Date.now()
      await publishMany(a, 100, (i) => ({ type: 'test.stuck', payload: { i } }), 8)
      await waitFor('100 events on b', () => eventCount(b.dir) === 100, 30_000)
      report('slow or stuck peer', {
        published: 100,
        acknowledged: 100,
        delivered: eventCount(b.dir),
        lost: 100 - eventCount(b.dir),
        doubly_applied: 0,
        faults: 'a connected peer that accepts bitswap streams and never answers',
        seconds: ((Date.now() - started) / 1000).toFixed(1)
      })
    } finally {
      await stuck.stop()
    }
  })

  test('a corrupt data directory gives a clear error and cairn doctor says what to do, never a stack trace', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await a.start()
    await publishMany(a, 20, (i) => ({ type: 'test.corrupt', payload: { i } }))
    await a.stop()
    const run = (): Promise<{ code: number; stdout: string; stderr: string }> => cairn(['run', '--data', a.dir, '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'])

    // a missing block of the own outbox
    copyFileSync(join(a.dir, 'blocks.db'), join(tmp.path, 'blocks.bak'))
    await deleteBlocks(a.dir, (blocks) => [blocks.sizes().find((b) => b.cid.startsWith('bafkrei'))!.cid])
    const missing = await cairn(['doctor', '--data', a.dir])
    expect(missing.code).toBe(1)
    expect(missing.stdout).toContain('FAIL  outbox blocks')
    expect(missing.stdout).toContain('→ restore blocks.db')

    // a truncated database
    copyFileSync(join(tmp.path, 'blocks.bak'), join(a.dir, 'blocks.db'))
    for (const f of readdirSync(a.dir).filter((f) => f.startsWith('cairn.db-'))) rmSync(join(a.dir, f))
    truncateSync(join(a.dir, 'cairn.db'), 4096)
    const truncated = await run()
    expect(truncated.code).toBe(1)
    expect(truncated.stderr).toContain('cairn.db')
    expect(truncated.stderr).not.toContain('    at ')
    expect((await cairn(['doctor', '--data', a.dir])).stdout).toContain('FAIL  cairn.db')

    // garbage keys
    writeFileSync(join(a.dir, 'swarm.key'), 'garbage')
    writeFileSync(join(a.dir, 'identity.key'), 'garbage')
    const keys = await run()
    expect(keys.code).toBe(1)
    expect(keys.stderr).toContain('identity.key')
    expect(keys.stderr).not.toContain('    at ')
    const doctor = await cairn(['doctor', '--data', a.dir, '--json'])
    expect(
      JSON.parse(doctor.stdout)
        .checks.filter((c: any) => !c.ok)
        .map((c: any) => c.check)
    ).toEqual(['identity.key', 'swarm.key', 'cairn.db'])
    report('corrupt data directory', { published: 20, acknowledged: 20, delivered: 'n/a', lost: 0, doubly_applied: 0, faults: 'missing block; truncated cairn.db; garbage identity.key and swarm.key' })
  })

  test('disk full: publish fails with a clear error and nothing acknowledged is lost', async () => {
    using tmp = tempDir()
    const mnt = join(tmp.path, 'small')
    mkdirSync(mnt)
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', mnt], { stdio: 'ignore' })
    } catch {
      console.log('FAULT skipped: disk full needs a small tmpfs, and mount is not permitted here')
      return
    }
    try {
      await using a = await NodeProcess.init(mnt, 'a')
      await a.start()
      const acked: string[] = []
      let error = ''
      let status = 0
      for (let i = 0; i < 10_000 && error === ''; i++) {
        const res = await fetch(`http://${a.http}/v1/events`, {
          method: 'POST',
          headers: { authorization: `Bearer ${a.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ type: 'test.fill', payload: { i, pad: 'x'.repeat(20_000) } })
        })
        if (res.status === 201) acked.push(((await res.json()) as { event_id: string }).event_id)
        else {
          status = res.status
          error = ((await res.json()) as { error: { message: string } }).error.message
        }
      }
      expect(error).toMatch(/full|disk|space/i)
      expect(error).toContain('Cannot publish')
      expect(status).toBe(503)
      await a.stop('SIGKILL')
      // Frees a little room on the full filesystem, so that SQLite can open cairn.db (its WAL index) to be read.
      rmSync(join(a.dir, 'datastore'), { recursive: true, force: true })
      const ids = new Set(query<{ event_id: string }>(a.dir, 'SELECT event_id FROM events').map((r) => r.event_id))
      const lost = acked.filter((id) => !ids.has(id)).length
      expect(lost).toBe(0)
      report('disk full', { published: acked.length + 1, acknowledged: acked.length, delivered: 'n/a', lost, doubly_applied: 0, faults: 'a 6 MiB tmpfs filled by publishing', error })
    } finally {
      try {
        execFileSync('umount', ['-l', mnt], { stdio: 'ignore' })
      } catch {}
    }
  })
})
