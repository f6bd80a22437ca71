import { describe, expect, test } from 'bun:test'
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { RUN_SETTINGS, toNodeConfig } from '../src/config/catalog.ts'
import { resolveSettings } from '../src/config/resolve.ts'
import { initDataDir } from '../src/datadir/init.ts'
import type { Log } from '../src/log/logger.ts'
import { HybridClock, hlcMs } from '../src/model/hlc.ts'
import { CairnNode } from '../src/node/node.ts'
import { reclock } from '../src/node/reclock.ts'
import { BUILTIN_PLUGINS } from '../plugins/mod.ts'
import { query } from './helpers/db.ts'
import { addr } from './helpers/forge.ts'
import { cairn, tempDir, waitFor } from './helpers/process.ts'
import { type RecordingLog, recordingLog } from './helpers/log.ts'

const YEAR_MS = 365 * 86_400_000

const flagsOf = (dir: string, flags: Record<string, unknown>): Record<string, unknown> => ({
  data: dir,
  listen: ['/ip4/127.0.0.1/tcp/0'],
  http: '127.0.0.1:0',
  'announce-interval': '1s',
  'allow-unknown-types': true,
  ...flags
})

/** @returns the configuration `cairn run` (or `cairn reclock`) takes on `dir` with `flags` */
const configOf = (dir: string, flags: Record<string, unknown> = {}) => toNodeConfig(resolveSettings(RUN_SETTINGS, flagsOf(dir, flags), {}, {}))

/** Starts a node in this process whose wall clock is `offsetMs` off. */
async function node(dir: string, flags: Record<string, unknown>, log: Log, offsetMs = 0): Promise<CairnNode> {
  const config = configOf(dir, flags)
  const n = new CairnNode(config, { log, plugins: BUILTIN_PLUGINS, now: () => Date.now() + offsetMs })
  await n.start()
  return n
}

const grant = (invitee: string): Record<string, unknown> => ({
  type: 'workspace.invited',
  payload: { workspace_id: 'w1', invitee, role: 'member', invited_by: 'admin@example.com' }
})

/** @returns the subjects with access in a node's workspace_access table */
function granted(dir: string): string[] {
  return query<{ subject: string }>(dir, 'SELECT DISTINCT subject FROM workspace_access WHERE granted = 1 ORDER BY subject').map((r) => r.subject)
}

/**
 * A network of two producers: A, an owner whose clock is right, and B, a member whose clock ran a year ahead
 * while it published (seqs 2 and 3), then was set right; restarted, B goes on stamping after its last head
 * (seq 4). Returns the nodes running, B's events all held by A.
 */
async function cutOff(parent: string): Promise<{ a: string; b: string; A: CairnNode; B: CairnNode; logA: RecordingLog; logB: RecordingLog; bId: string }> {
  const a = join(parent, 'a')
  const b = join(parent, 'b')
  const founder = await initDataDir(a, { newNetwork: true })
  await initDataDir(b, { swarmKeyFile: join(a, 'swarm.key'), owners: [founder.peerId] })
  const logA = recordingLog()
  const logB = recordingLog()
  const A = await node(a, {}, logA.log)
  let B = await node(b, { bootstrap: [addr(A)] }, logB.log)
  try {
    const bId = B.peerId.toString()
    await A.members.add({ peer_id: bId })
    await B.publish(grant('before@example.com'))
    await waitFor('A to take seq 1 of B', () => (A.store.producers.get(bId)?.processed_seq ?? 0) >= 1)
    await B.stop()

    // A year ahead (a bad NTP server): B publishes, A holds every head of it.
    B = await node(b, { bootstrap: [addr(A)] }, logB.log, YEAR_MS)
    await B.publish(grant('ahead@example.com'))
    // A snapshot of B's tables then holds the grant stamped ahead; it needs every event B holds processed (A's
    // membership change may still be on its way when B restarts).
    await waitFor('B to apply its grant', () => granted(b).join() === 'ahead@example.com,before@example.com' && B.store.events.pendingCount() === 0)
    expect((await B.writeSnapshots('workspace-access')).length).toBe(1)
    await B.publish({ type: 'test.e', payload: { n: 3 } })
    await waitFor('A to hold B for its clock', async () => (await A.statusJson()).clock.producers_ahead.some((p) => p.producer === bId))
    // Heads of A moving forward while B watches (the first one it sees sets where A was): one producer, twice,
    // puts B's clock a year ahead of its own.
    for (let n = 1; n <= 3; n++) {
      await A.publish({ type: 'test.a', payload: { n } })
      await waitFor(`B to see head ${n + 1} of A`, () => (B.store.producers.get(A.peerId.toString())?.head_seq ?? 0) >= n + 1)
    }
    const unsure = await waitFor('B to say its clock is off by one account', async () => (await B.statusJson()).reasons.find((r) => r.startsWith('clock unsure: ')))
    expect(unsure).toContain('1 of 1 producer(s) watched put this node')
    expect(unsure).toContain('ahead of theirs')
    expect((await B.statusJson()).clock.publish_refused).toBeNull()
    await B.stop()

    // The clock set right: B resumes after its last head, a year ahead, and says so.
    B = await node(b, { bootstrap: [addr(A)] }, logB.log)
    const published = await B.publish({ type: 'test.e', payload: { n: 4 } })
    expect(published.seq).toBe(4)
    return { a, b, A, B, logA, logB, bId }
  } catch (err) {
    // The nodes of a setup that failed are stopped, so that the test's directory goes with them.
    await B.stop()
    await A.stop()
    throw err
  }
}

describe('a node whose clock ran a year ahead, in a network of two producers', () => {
  test('is cut off once its clock is set right: its peer holds every event it stamps, and both say so', async () => {
    using tmp = tempDir()
    const { A, B, logA, logB, bId } = await cutOff(tmp.path)
    try {
      const behind = logB.lines.find((l) => l.fields.reason === 'own_clock_behind')
      expect(behind?.fields.ahead_ms as number).toBeGreaterThan(YEAR_MS - 86_400_000)
      expect(behind?.msg).toContain('cairn reclock')
      const own = await B.statusJson()
      expect(own.clock.stamps_ahead_ms).toBeGreaterThan(YEAR_MS - 86_400_000)
      expect(own.verdict).toBe('degraded')
      expect(own.reasons.find((r) => r.startsWith('this node stamps its events 365.0 d ahead of its clock'))).toContain('run cairn reclock')
      const metrics = await (await fetch(`http://127.0.0.1:${B.http!.port}/metrics`)).text()
      expect(Number(/^cairn_clock_stamps_ahead_seconds (\S+)$/m.exec(metrics)?.[1])).toBeGreaterThan((YEAR_MS - 86_400_000) / 1000)

      // A holds B's heads (they never reach its producers table), so it has nothing of seqs 2..4.
      await waitFor('A to hold head 4 of B', () => logA.lines.some((l) => l.fields.reason === 'clock_skew' && l.fields.producer === bId))
      const seen = await A.statusJson()
      expect(seen.reasons.find((r) => r.startsWith('clock ahead, held: '))).toContain(bId)
      expect(A.store.producers.get(bId)).toMatchObject({ head_seq: 1, processed_seq: 1 })
      // Nothing else tells B that A takes none of its events: with one peer, no majority can say it.
      expect(own.own_events_refused_by).toEqual([])
    } finally {
      await B.stop()
      await A.stop()
    }
  }, 120_000)

  test('cairn reclock withdraws what it stamped ahead: its peer records a lost gap and takes what it publishes next, and the withdrawn events can be published again', async () => {
    using tmp = tempDir()
    const cut = await cutOff(tmp.path)
    const { a, b, A, logA, logB, bId } = cut
    let B = cut.B
    try {
      // Refused while the node runs.
      const running = await cairn(['reclock', '--data', b], { runtime: 'bun' })
      expect(running.code).toBe(1)
      expect(running.stderr).toContain('is already running on')
      const previous = B.store.producers.get(bId)?.head_hlc ?? ''
      // B applied its own grant stamped a year ahead: it would outrank every later change of that access here.
      expect(granted(b)).toEqual(['ahead@example.com', 'before@example.com'])
      await B.stop()

      // A clock set back (here a year behind the heads B holds of A) is no clock that ran ahead: refused, nothing changed.
      const config = configOf(b)
      await expect(reclock(config, { now: () => Date.now() - YEAR_MS })).rejects.toThrow(
        /this clock looks behind, not set right: the last heads of 1 other producer\(s\) are stamped a median of 365\.0 d ahead of it/
      )

      const dry = await cairn(['reclock', '--data', b, '--dry-run'], { runtime: 'bun' })
      expect(dry.code).toBe(0)
      expect(JSON.parse(dry.stdout)).toMatchObject({ dry_run: true, withdrawn: { count: 3, from_seq: 2, to_seq: 4 }, head: null, rebuild: ['workspace-access'] })
      expect(dry.stderr).toContain('would withdraw seq 2..4')
      // With events-retention (read from the environment or config.json, as the node reads it), no rebuild is asked for.
      const kept = await cairn(['reclock', '--data', b, '--dry-run'], { runtime: 'bun', env: { CAIRN_EVENTS_RETENTION: '30d' } })
      expect(JSON.parse(kept.stdout)).toMatchObject({ rebuild: [], rebuild_not_asked: ['workspace-access'] })
      expect(kept.stderr).toContain('no rebuild is asked for, as events-retention deleted rows a rebuild would need')
      expect(query(b, 'SELECT count(*) AS n FROM outbox WHERE pruned_at IS NULL')[0]).toEqual({ n: 4 })

      const done = await cairn(['reclock', '--data', b], { runtime: 'bun' })
      expect(done.code).toBe(0)
      const report = JSON.parse(done.stdout)
      const file = join(b, 'withdrawn-2-4.ndjson')
      expect(report).toMatchObject({
        dry_run: false,
        withdrawn: { count: 3, from_seq: 2, to_seq: 4 },
        head: { seq: 4 },
        republish_file: file,
        rebuild: ['workspace-access'],
        membership_changes: [],
        snapshots_dropped: ['workspace-access']
      })
      expect(query(b, 'SELECT plugin FROM snapshots_out')).toEqual([])
      expect(query(b, "SELECT path FROM outbox_dirs WHERE path = 'snapshots'")).toEqual([])
      expect(report.ahead_ms).toBeGreaterThan(YEAR_MS - 86_400_000)
      expect(done.stderr).toContain('withdraw seq 2..4 (3 event(s) stamped')
      expect(done.stderr).toContain(`cairn publish --data ${b} --batch ${file}`)
      // The new head is stamped by the clock, before the one stamped a year ahead; the withdrawn seqs are gone
      // from the outbox tree and from B's events, never to be used again.
      expect(report.head.hlc < previous).toBe(true)
      expect(Math.abs((hlcMs(report.head.hlc) ?? 0) - Date.now())).toBeLessThan(60_000)
      expect(query(b, 'SELECT seq FROM events WHERE producer = ? ORDER BY seq', [bId]).map((r) => r.seq)).toEqual([1])
      expect(query(b, 'SELECT seq FROM outbox WHERE pruned_at IS NULL')).toEqual([{ seq: 1 }])
      const requests = readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))
      expect(requests.map((r) => r.type)).toEqual(['workspace.invited', 'test.e', 'test.e'])
      expect(requests.map((r) => r.payload)).toEqual([grant('ahead@example.com').payload, { n: 3 }, { n: 4 }])

      // Again: nothing left to do.
      const again = await cairn(['reclock', '--data', b], { runtime: 'bun' })
      expect(again.code).toBe(0)
      expect(again.stderr).toContain('nothing to reclock')

      const linesBefore = logB.lines.length
      B = await node(b, { bootstrap: [addr(A)] }, logB.log)
      expect(logB.lines.slice(linesBefore).some((l) => l.fields.reason === 'own_clock_behind')).toBe(false)
      expect((await B.statusJson()).clock.stamps_ahead_ms).toBeLessThan(60_000)
      // The rebuild asked for drops what the withdrawn grant did on B.
      await waitFor("B's rebuild to drop the withdrawn grant", () => granted(b).join() === 'before@example.com')

      // A takes the new head: seqs 2..4 are a lost gap, and B's next event is taken at once.
      await waitFor('A to take head 4 of B', () => (A.store.producers.get(bId)?.processed_seq ?? 0) >= 4)
      expect(query(a, 'SELECT from_seq, to_seq, kind FROM gaps WHERE producer = ?', [bId])).toEqual([{ from_seq: 2, to_seq: 4, kind: 'lost' }])
      expect(logA.lines.find((l) => l.fields.reason === 'gap_lost')?.fields).toMatchObject({ producer: bId, from_seq: 2, to_seq: 4 })
      const statusA = await A.statusJson()
      expect(statusA.reasons).toContain('1 gap(s): events no longer fetchable')
      expect(statusA.clock.producers_ahead).toEqual([])
      await B.publish({ type: 'test.e', payload: { n: 5 } })
      await waitFor('A to take seq 5 of B', () => (A.store.producers.get(bId)?.processed_seq ?? 0) >= 5)

      // Published again, stamped right: A takes them too; a second run of the file publishes nothing twice.
      const republished = await cairn(['publish', '--data', b, '--batch', file], { runtime: 'bun' })
      expect(republished.code).toBe(0)
      expect(
        republished.stdout
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l).seq)
      ).toEqual([6, 7, 8])
      await waitFor('A to take the events published again', () => (A.store.producers.get(bId)?.processed_seq ?? 0) >= 8)
      await waitFor('the grant published again to decide access on A', () => granted(a).join() === 'ahead@example.com,before@example.com')
      expect(query(a, 'SELECT seq FROM events WHERE producer = ? ORDER BY seq', [bId]).map((r) => r.seq)).toEqual([1, 5, 6, 7, 8])
      const twice = await cairn(['publish', '--data', b, '--batch', file], { runtime: 'bun' })
      expect(
        twice.stdout
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l).seq)
      ).toEqual([6, 7, 8])
      expect(B.store.outbox.lastSeq()).toBe(8)
      expect(existsSync(`${file}.partial`)).toBe(false)
    } finally {
      await B.stop()
      await A.stop()
    }
  }, 180_000)
})

/** Starts a new network's one node on `dir`, has it publish a grant, and starts it again with its clock a year ahead. */
async function aYearAheadAfterAGrant(dir: string): Promise<CairnNode> {
  await initDataDir(dir, { newNetwork: true })
  const log = recordingLog()
  const n = await node(dir, {}, log.log)
  await n.publish(grant('before@example.com'))
  await n.stop()
  return await node(dir, {}, log.log, YEAR_MS)
}

describe('cairn reclock on a node that stamped only a head ahead', () => {
  test('withdraws no event and replaces the head, stamped by the clock', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'n')
    // A year ahead, it publishes nothing but re-signs its head (a snapshot).
    const n = await aYearAheadAfterAGrant(dir)
    try {
      await waitFor('its grant applied', () => granted(dir).length > 0)
      await n.writeSnapshots('workspace-access')
    } finally {
      await n.stop()
    }
    const config = configOf(dir)
    const report = await reclock(config)
    expect(report).toMatchObject({ withdrawn: null, head: { seq: 1 }, republish_file: null, rebuild: [], snapshots_dropped: [] })
    expect(report.ahead_ms).toBeGreaterThan(YEAR_MS - 86_400_000)
    expect(Math.abs((hlcMs(report.head!.hlc) ?? 0) - Date.now())).toBeLessThan(60_000)
    expect(query(dir, 'SELECT seq FROM events')).toEqual([{ seq: 1 }])
    expect((await reclock(config)).head).toBeNull()
  }, 60_000)
})

describe('cairn reclock stopped between its commit and the republish file', () => {
  test('the next run finishes the file, and drops one left by a run that committed nothing', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'n')
    const n = await aYearAheadAfterAGrant(dir)
    await n.publish({ type: 'test.e', payload: { n: 2 } })
    await n.stop()
    const config = configOf(dir)
    const file = join(dir, 'withdrawn-2-2.ndjson')
    // Left by a run that stopped before its commit: those events were not withdrawn then.
    const stale = join(dir, 'withdrawn-7-9.ndjson.partial')
    writeFileSync(stale, '{}\n')
    // The rename after the commit fails (as a crash there would leave it).
    mkdirSync(join(file, 'in-the-way'), { recursive: true })
    await expect(reclock(config)).rejects.toThrow()
    expect(query(dir, 'SELECT seq FROM outbox WHERE pruned_at IS NULL')).toEqual([{ seq: 1 }])
    rmSync(file, { recursive: true })
    const again = await reclock(config)
    expect(again.finished_file).toBe(file)
    expect(existsSync(`${file}.partial`)).toBe(false)
    expect(existsSync(stale)).toBe(false)
    expect(
      readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).payload)
    ).toEqual([{ n: 2 }])
    expect((await reclock(config)).finished_file).toBeNull()
  }, 60_000)
})

describe("what a node can tell of its own clock from others' heads", () => {
  const T = 1_800_000_000_000
  const watch = (offsets: number[]): HybridClock['watch'] => {
    const w = new HybridClock(() => T).watch
    // Three heads of each: the last two moved forward while this node watched.
    offsets.forEach((o, i) => {
      for (let seq = 1; seq <= 3; seq++) w.sample(`p${i}`, seq, T + o)
    })
    return w
  }

  test('one other producer, or two that disagree, cannot tell whose clock is off: status says so, publishing goes on', () => {
    expect(watch([-YEAR_MS]).unsure()).toContain("1 of 1 producer(s) watched put this node's clock up to 365.0 d ahead of theirs")
    expect(watch([-YEAR_MS]).stampRefusal()).toBeUndefined()
    expect(watch([0, YEAR_MS]).unsure()).toContain("1 of 2 producer(s) watched put this node's clock up to 365.0 d behind theirs")
  })

  test('two that agree refuse publishes instead; a majority of two that puts this clock right says nothing of it', () => {
    expect(watch([-YEAR_MS, -YEAR_MS]).unsure()).toBeUndefined()
    expect(watch([-YEAR_MS, -YEAR_MS]).stampRefusal()).toContain('ahead of')
    expect(watch([0, 1000, -YEAR_MS]).unsure()).toBeUndefined()
    expect(watch([0, 1000]).unsure()).toBeUndefined()
  })

  test("one head stamped long before it arrived (the first after a partition) says nothing: the producer's next one must agree", () => {
    const w = new HybridClock(() => T).watch
    w.sample('p', 1, T)
    w.sample('p', 2, T - 600_000)
    expect(w.unsure()).toBeUndefined()
    w.sample('p', 3, T)
    expect(w.unsure()).toBeUndefined()
    w.sample('p', 4, T - 600_000)
    w.sample('p', 5, T - 600_000)
    expect(w.unsure()).toContain('10.0 min ahead of theirs')
  })
})
