/**
 * Joining a running network: A's history holds N events over K state keys (invitations and revocations of
 * `read` for K people, in turn); a fresh node C joins. Measured twice: while A still holds every file
 * (C replays everything), and after A's housekeeping compacted its outbox to the newest event per key.
 *
 *   bun build.ts && bun bench/join.ts                 # N=100000 K=1000
 *   BENCH_N=20000 BENCH_K=1000 bun bench/join.ts
 *
 * "complete" is the moment C's workspace_access table equals A's, byte for byte.
 */
import { Database } from 'bun:sqlite'
import { mkdtempSync, rmSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { CairnNode, procStats } from './nodes.ts'

const N = Number(process.env.BENCH_N ?? 100_000)
const K = Number(process.env.BENCH_K ?? 1000)
const BATCH = 500

const table = (dir: string): string => {
  const db = new Database(join(dir, 'cairn.db'), { readonly: true })
  try {
    return JSON.stringify(db.query('SELECT * FROM workspace_access ORDER BY workspace_id, subject, permission').all())
  } catch {
    return ''
  } finally {
    db.close()
  }
}

const count = (dir: string, sql: string): number => {
  const db = new Database(join(dir, 'cairn.db'), { readonly: true })
  try {
    return (db.query(sql).get() as { n: number }).n
  } finally {
    db.close()
  }
}

const event = (i: number): unknown => {
  const subject = `u${i % K}@example.com`
  return Math.floor(i / K) % 2 === 0
    ? { type: 'workspace.invited', payload: { workspace_id: 'w', invitee: subject, role: 'viewer', invited_by: 'root@example.com' } }
    : { type: 'permission.revoked', payload: { workspace_id: 'w', subject, permission: 'read' } }
}

async function publishAll(a: CairnNode): Promise<number> {
  const token = (await Bun.file(join(a.dir, 'api.token')).text()).trim()
  const t0 = performance.now()
  let next = 0
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < N) {
        const from = next
        next += BATCH
        const body = Array.from({ length: Math.min(BATCH, N - from) }, (_, j) => event(from + j))
        const res = await fetch(`http://${a.http}/v1/events`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
        if (res.status !== 200) throw new Error(`publish failed: ${res.status} ${await res.text()}`)
        await res.arrayBuffer()
      }
    })
  )
  return (performance.now() - t0) / 1000
}

/** Starts a fresh node that joins `a`, and measures until its table equals a's. */
async function join_(dir: string, name: string, a: CairnNode, expected: string): Promise<{ seconds: number; events: number; cpu: number; rss: number }> {
  const c = await CairnNode.create(join(dir, name), a.swarmKey)
  const t0 = performance.now()
  await c.start([a.addrs[0]])
  try {
    const deadline = Date.now() + 30 * 60_000
    let stats = { peakRssMiB: 0, cpuSeconds: 0 }
    while (table(c.dir) !== expected) {
      if (Date.now() > deadline) throw new Error(`${name} did not complete in 30 min`)
      stats = procStats(c.proc!.pid)
      await Bun.sleep(100)
    }
    const seconds = (performance.now() - t0) / 1000
    stats = procStats(c.proc!.pid)
    return { seconds, events: count(c.dir, 'SELECT count(*) AS n FROM events'), cpu: stats.cpuSeconds, rss: stats.peakRssMiB }
  } finally {
    await c.stop()
  }
}

const dir = mkdtempSync(join(tmpdir(), 'cairn-bench-join-'))
try {
  const a = await CairnNode.create(join(dir, 'a'))
  // Housekeeping's garbage collection walks the whole outbox DAG: at 100,000 files a run takes about a
  // second, so while A holds every file it runs hourly, not every second.
  a.extraArgs = ['--retention', '24h', '--housekeeping-interval', '1h']
  await a.start([])
  const publishS = await publishAll(a)
  while (count(a.dir, "SELECT count(*) AS n FROM events WHERE state = 'pending'") > 0) await Bun.sleep(100)
  const expected = table(a.dir)
  if (JSON.parse(expected).length !== K) throw new Error(`A's table has ${JSON.parse(expected).length} rows, expected ${K}`)
  console.error(`# published ${N} events over ${K} keys in ${publishS.toFixed(1)} s`)
  const full = await join_(dir, 'c-full', a, expected)
  console.error(`# replay everything: ${full.seconds.toFixed(1)} s`)
  // Restart A with a short retention: housekeeping compacts its outbox to the newest event per key.
  await a.stop()
  a.extraArgs = ['--retention', '1s', '--housekeeping-interval', '1s']
  const c0 = performance.now()
  await a.start([])
  while (count(a.dir, 'SELECT count(*) AS n FROM outbox WHERE pruned_at IS NULL') > K) await Bun.sleep(200)
  const compactS = (performance.now() - c0) / 1000
  console.error(`# compacted to ${K} files in ${compactS.toFixed(1)} s (restart included)`)
  const compacted = await join_(dir, 'c-compacted', a, expected)
  await a.stop()
  const rows = [
    ['events the newcomer fetches', full.events, compacted.events],
    ['time until its state is complete (s)', full.seconds.toFixed(1), compacted.seconds.toFixed(1)],
    ['newcomer CPU (s)', full.cpu.toFixed(1), compacted.cpu.toFixed(1)],
    ['newcomer peak RSS (MiB)', full.rss.toFixed(0), compacted.rss.toFixed(0)]
  ]
  console.log(`Join: ${N.toLocaleString('en')} events over ${K.toLocaleString('en')} keys, ${cpus().length} cores; publish ${publishS.toFixed(1)} s, compaction ${compactS.toFixed(1)} s\n`)
  console.log('| figure | replay everything | compacted |\n| --- | --- | --- |')
  for (const r of rows) console.log(`| ${r.join(' | ')} |`)
} finally {
  rmSync(dir, { recursive: true, force: true })
}
