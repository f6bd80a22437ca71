import { describe, expect, test } from 'bun:test'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { hlcMs } from '../src/model/hlc.ts'
import { query } from './helpers/db.ts'
import { cairn, cairnCommand, NodeProcess, ROOT, tempDir, waitFor } from './helpers/process.ts'

/**
 * The flow of clockRecovery.test.ts, with real processes of dist/cairn: B's clock is moved by libfaketime, which
 * the compiled binary takes as any program does (Bun reads the wall clock through libc's clock_gettime).
 */

const YEAR_MS = 365 * 86_400_000
const DAY_MS = 86_400_000

/**
 * The environment that runs a process a year ahead under libfaketime, or why this machine cannot.
 *
 * LD_PRELOAD is set directly rather than through the `faketime` wrapper, which forks and waits: NodeProcess needs
 * the node's own pid (node.json names it) and its signals. The library's path is the one the wrapper sets. Only the
 * wall clock moves (FAKETIME_DONT_FAKE_MONOTONIC=1): libfaketime by default fakes the monotonic clocks too
 * (CLOCK_MONOTONIC and CLOCK_BOOTTIME then read as the date a year ahead, in seconds), which the event loop's
 * timers and performance.now() rest on, while a system clock that ran ahead moves neither. /proc/uptime, which the
 * guarded retention clock reads, is a file libfaketime does not touch.
 */
const FAKED: { env: Record<string, string> } | { skip: string } = (() => {
  let preload: string
  try {
    const r = Bun.spawnSync(['faketime', '-f', '+0', 'sh', '-c', 'printf %s "$LD_PRELOAD"'], { stdout: 'pipe', stderr: 'ignore' })
    preload = r.stdout.toString()
    if (r.exitCode !== 0 || !preload.includes('faketime')) return { skip: 'needs libfaketime (apt-get install faketime)' }
  } catch {
    return { skip: 'needs libfaketime (apt-get install faketime)' }
  }
  const env = { LD_PRELOAD: preload, FAKETIME: '+365d', FAKETIME_DONT_FAKE_MONOTONIC: '1' }
  // The binary is Bun itself: BUN_BE_BUN=1 makes it run a script, here one that prints its clock. A binary that is
  // missing, or that runs no script, says nothing about faketime: the test runs, and fails on what is wrong.
  if (!existsSync(join(ROOT, 'dist', 'cairn'))) return { env }
  const clock = (extra: Record<string, string>): number => {
    const r = Bun.spawnSync(cairnCommand('binary', ['-e', 'process.stdout.write(String(Date.now()))']), {
      env: { ...process.env, BUN_BE_BUN: '1', ...extra },
      stdout: 'pipe',
      stderr: 'ignore'
    })
    return Number(r.stdout.toString())
  }
  if (!(Math.abs(clock({}) - Date.now()) < 60_000)) return { env }
  if (clock(env) - Date.now() < YEAR_MS - DAY_MS) return { skip: 'needs libfaketime to move the clock of dist/cairn, and it does not here' }
  return { env }
})()
const SKIP = 'skip' in FAKED ? FAKED.skip : undefined

const grant = (invitee: string): string[] => ['--type', 'workspace.invited', '--payload', JSON.stringify({ workspace_id: 'w1', invitee, role: 'member', invited_by: 'admin@example.com' })]

/** Publishes through `cairn publish`. @returns the seq */
async function publish(node: NodeProcess, args: string[]): Promise<number> {
  const r = await cairn(['publish', '--data', node.dir, ...args])
  if (r.code !== 0) throw new Error(`cairn publish failed (${r.code}): ${r.stderr}`)
  return JSON.parse(r.stdout).seq as number
}

/** @returns `cairn status --json` of a node */
async function statusOf(node: NodeProcess): Promise<any> {
  const r = await cairn(['status', '--json', '--data', node.dir])
  if (r.stdout.trim() === '') throw new Error(`cairn status failed (${r.code}): ${r.stderr}`)
  return JSON.parse(r.stdout)
}

/** @returns what a node stored and took of a producer: its head seq and the seq its events are taken up to */
function producerRow(node: NodeProcess, producer: string): { head_seq: number; processed_seq: number } | undefined {
  return query<{ head_seq: number; processed_seq: number }>(node.dir, 'SELECT head_seq, processed_seq FROM producers WHERE producer = ?', [producer])[0]
}

/** @returns the subjects with access in a node's workspace_access table */
function granted(node: NodeProcess): string {
  return query<{ subject: string }>(node.dir, 'SELECT DISTINCT subject FROM workspace_access WHERE granted = 1 ORDER BY subject')
    .map((r) => r.subject)
    .join()
}

/** @returns a status document when it says that `producer` was held for its clock at `since` or later */
function heldSince(status: any, producer: string, since: number): any {
  return status.clock.producers_ahead.some((p: { producer: string; seen_at: string }) => p.producer === producer && Date.parse(p.seen_at) >= since) ? status : undefined
}

/** @returns a node's JSON log lines */
function logLines(node: NodeProcess): Array<Record<string, unknown>> {
  return node.logs
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
}

describe(`a member whose clock ran a year ahead, run as dist/cairn under libfaketime${SKIP == null ? '' : ` (skipped: ${SKIP})`}`, () => {
  test.skipIf(SKIP != null)(
    'its owner holds what it stamps, with its clock set right too; cairn reclock withdraws it: the owner records a lost gap, takes what follows, and the withdrawn events published again',
    async () => {
      const faked = (FAKED as { env: Record<string, string> }).env
      using tmp = tempDir()
      await using a = await NodeProcess.init(tmp.path, 'a')
      await using b = await NodeProcess.init(tmp.path, 'b', { network: a, owners: [a.peerId] })
      await a.start()
      const bootstrap = ['--bootstrap', a.addrs[0]]
      await b.start(bootstrap)
      expect((await cairn(['members', 'add', b.peerId, '--name', 'b', '--data', a.dir])).code).toBe(0)
      await waitFor('B to apply its admission', async () => {
        const r = await cairn(['members', 'list', '--json', '--data', b.dir])
        return r.code === 0 && (JSON.parse(r.stdout) as { members: Array<{ peer_id: string }> }).members.some((m) => m.peer_id === b.peerId)
      })
      expect(await publish(b, grant('before@example.com'))).toBe(1)
      await waitFor('A to take seq 1 of B', () => (producerRow(a, b.peerId)?.processed_seq ?? 0) >= 1, 60_000)
      expect(await b.stop()).toBe(0)

      // A year ahead (a bad NTP server): B publishes, A holds every head of it.
      await b.start(bootstrap, faked)
      const startedAt = Date.parse(JSON.parse(readFileSync(join(b.dir, 'node.json'), 'utf8')).started_at)
      expect(startedAt - Date.now()).toBeGreaterThan(YEAR_MS - DAY_MS)
      expect(await publish(b, grant('ahead@example.com'))).toBe(2)
      expect(await publish(b, ['--type', 'test.e', '--payload', '{"n":3}'])).toBe(3)
      const held = await waitFor(
        "A's status to hold B for its clock",
        async () => {
          const s = await statusOf(a)
          return s.clock.producers_ahead.some((p: { producer: string }) => p.producer === b.peerId) ? s : undefined
        },
        60_000
      )
      expect(held.verdict).toBe('degraded')
      expect(held.reasons.find((r: string) => r.startsWith('clock ahead, held: '))).toContain(`${b.peerId} by `)
      const ahead = held.clock.producers_ahead.find((p: { producer: string }) => p.producer === b.peerId)
      expect(ahead.ahead_ms).toBeGreaterThan(YEAR_MS - DAY_MS)
      expect(producerRow(a, b.peerId)).toEqual({ head_seq: 1, processed_seq: 1 })
      expect(await b.stop()).toBe(0)

      // The clock set right: B resumes after its last head, a year ahead, says so, and its next event is held too.
      const restarted = Date.now()
      await b.start(bootstrap)
      const behind = logLines(b).find((l) => l.reason === 'own_clock_behind')
      expect(behind?.ahead_ms as number).toBeGreaterThan(YEAR_MS - DAY_MS)
      const own = await statusOf(b)
      expect(own.verdict).toBe('degraded')
      expect(own.clock.stamps_ahead_ms).toBeGreaterThan(YEAR_MS - DAY_MS)
      expect(own.reasons.find((r: string) => r.startsWith('this node stamps its events 365.0 d ahead of its clock'))).toContain('run cairn reclock')
      // B pushes its heads when it connects, then when they change (unchanged ones about once a minute): once A
      // held the push of its connection (head 3), a hold after the publish is one of head 4.
      await waitFor('A to hold head 3 of B, pushed as B connected', async () => heldSince(await statusOf(a), b.peerId, restarted), 60_000)
      expect(await publish(b, ['--type', 'test.e', '--payload', '{"n":4}'])).toBe(4)
      const published = Date.now()
      const heldAfter = await waitFor('A to hold head 4 of B', async () => heldSince(await statusOf(a), b.peerId, published), 60_000)
      expect(heldAfter.reasons.find((r: string) => r.startsWith('clock ahead, held: '))).toContain(`${b.peerId} by `)
      expect(producerRow(a, b.peerId)).toEqual({ head_seq: 1, processed_seq: 1 })
      // B applied its own grant stamped a year ahead: it would outrank every later change of that access here.
      expect(granted(b)).toBe('ahead@example.com,before@example.com')
      expect(granted(a)).toBe('before@example.com')

      // Refused while the node runs.
      const running = await cairn(['reclock', '--data', b.dir])
      expect(running.code).toBe(1)
      expect(running.stderr).toContain('is already running on')
      const previous = query<{ head_hlc: string }>(b.dir, 'SELECT head_hlc FROM producers WHERE producer = ?', [b.peerId])[0].head_hlc
      expect(await b.stop()).toBe(0)

      const dry = await cairn(['reclock', '--data', b.dir, '--dry-run'])
      expect(dry.code).toBe(0)
      const file = join(b.dir, 'withdrawn-2-4.ndjson')
      expect(JSON.parse(dry.stdout)).toMatchObject({ dry_run: true, withdrawn: { count: 3, from_seq: 2, to_seq: 4 }, head: null, republish_file: file, rebuild: ['workspace-access'] })
      expect(dry.stderr).toContain('would withdraw seq 2..4 (3 event(s) stamped')
      expect(existsSync(file)).toBe(false)
      expect(query(b.dir, 'SELECT seq FROM outbox WHERE pruned_at IS NULL ORDER BY seq')).toEqual([{ seq: 1 }, { seq: 2 }, { seq: 3 }, { seq: 4 }])

      const done = await cairn(['reclock', '--data', b.dir])
      expect(done.code).toBe(0)
      const report = JSON.parse(done.stdout)
      expect(report).toMatchObject({
        dry_run: false,
        withdrawn: { count: 3, from_seq: 2, to_seq: 4 },
        head: { seq: 4 },
        republish_file: file,
        finished_file: null,
        rebuild: ['workspace-access'],
        rebuild_not_asked: [],
        membership_changes: []
      })
      expect(report.previous_hlc).toBe(previous)
      expect(report.ahead_ms).toBeGreaterThan(YEAR_MS - DAY_MS)
      expect(done.stderr).toContain('withdraw seq 2..4 (3 event(s) stamped')
      expect(done.stderr).toContain(`signed head 4 stamped ${report.head.hlc}; start the node`)
      expect(done.stderr).toContain(`cairn publish --data ${b.dir} --batch ${file}`)
      expect(done.stderr).toContain('asked a rebuild of plugin(s) workspace-access')
      // The new head is stamped by the clock, before the one stamped a year ahead.
      expect(report.head.hlc < previous).toBe(true)
      expect(Math.abs((hlcMs(report.head.hlc) ?? 0) - Date.now())).toBeLessThan(60_000)
      expect(query(b.dir, 'SELECT seq FROM outbox WHERE pruned_at IS NULL')).toEqual([{ seq: 1 }])
      expect(existsSync(`${file}.partial`)).toBe(false)
      const requests = readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))
      expect(requests.map((r) => [r.type, r.payload.invitee ?? r.payload.n])).toEqual([
        ['workspace.invited', 'ahead@example.com'],
        ['test.e', 3],
        ['test.e', 4]
      ])
      const again = await cairn(['reclock', '--data', b.dir])
      expect(again.code).toBe(0)
      expect(again.stderr).toContain('nothing to reclock')

      // B starts with its clock right: it stamps by it, and its rebuild drops what the withdrawn grant did.
      const logged = b.logs.length
      await b.start(bootstrap)
      expect(b.logs.slice(logged)).not.toContain('own_clock_behind')
      expect((await statusOf(b)).clock.stamps_ahead_ms).toBeLessThan(60_000)
      await waitFor("B's rebuild to drop the withdrawn grant", () => granted(b) === 'before@example.com', 60_000)

      // A takes the new head: seqs 2..4 are a lost gap, and B's next event is taken at once.
      await waitFor('A to take head 4 of B', () => (producerRow(a, b.peerId)?.processed_seq ?? 0) >= 4, 60_000)
      expect(query(a.dir, 'SELECT from_seq, to_seq, kind FROM gaps WHERE producer = ?', [b.peerId])).toEqual([{ from_seq: 2, to_seq: 4, kind: 'lost' }])
      expect(logLines(a).find((l) => l.reason === 'gap_lost')).toMatchObject({ producer: b.peerId, from_seq: 2, to_seq: 4 })
      const statusA = await statusOf(a)
      expect(statusA.reasons).toContain('1 gap(s): events no longer fetchable')
      expect(statusA.clock.producers_ahead).toEqual([])
      expect(statusA.reasons.some((r: string) => r.startsWith('clock ahead, held: '))).toBe(false)
      expect(await publish(b, ['--type', 'test.e', '--payload', '{"n":5}'])).toBe(5)
      await waitFor('A to take seq 5 of B', () => (producerRow(a, b.peerId)?.processed_seq ?? 0) >= 5, 60_000)

      // Published again, stamped right: A takes them too; a second run of the file publishes nothing twice.
      const republished = await cairn(['publish', '--data', b.dir, '--batch', file])
      expect(republished.code).toBe(0)
      const seqs = (r: { stdout: string }): number[] =>
        r.stdout
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l).seq as number)
      expect(seqs(republished)).toEqual([6, 7, 8])
      await waitFor('A to take the events published again', () => (producerRow(a, b.peerId)?.processed_seq ?? 0) >= 8, 60_000)
      await waitFor('the grant published again to decide access on A', () => granted(a) === 'ahead@example.com,before@example.com', 60_000)
      expect(query(a.dir, 'SELECT seq FROM events WHERE producer = ? ORDER BY seq', [b.peerId]).map((r) => r.seq)).toEqual([1, 5, 6, 7, 8])
      const twice = await cairn(['publish', '--data', b.dir, '--batch', file])
      expect(twice.code).toBe(0)
      expect(seqs(twice)).toEqual([6, 7, 8])
      expect(query(b.dir, 'SELECT max(seq) AS seq FROM outbox')).toEqual([{ seq: 8 }])

      expect(await b.stop()).toBe(0)
      expect(await a.stop()).toBe(0)
    },
    300_000
  )
})
