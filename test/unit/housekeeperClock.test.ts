import { describe, expect, test } from 'bun:test'
import { parseRecordedClock, PRUNE_CLOCK_KEY, PruneClock, uptimeReader } from '../../src/housekeeping/clock.ts'
import { housekeeper, type HousekeeperInit } from '../../src/housekeeping/housekeeper.ts'
import { type Log, silentLog } from '../../src/log/logger.ts'
import { Metrics } from '../../src/metrics/metrics.ts'
import { memoryOutbox } from '../helpers/outbox.ts'
import { waitFor } from '../helpers/process.ts'

const MIN = 60_000
const HOUR = 3_600_000
const B = '12D3KooWB2222222222222222222222222222222222222222222'
const C = '12D3KooWC3333333333333333333333333333333333333333333'
const D = '12D3KooWD4444444444444444444444444444444444444444444'

/**
 * An outbox over in-memory databases and a way to build its housekeeper, again over the same databases
 * for a restart. The housekeeper's wall clock is Date.now() plus `clock.jump`: the files are stamped with
 * the real time, so a jump is what a system clock set ahead looks like to housekeeping. Its uptime is
 * `clock.booted` + `clock.ran` in boot `clock.boot`: the time the machine measured since it booted.
 */
async function setup() {
  const { self, blocks, outbox, store } = await memoryOutbox()
  // The machine booted a day before the test's time 0 (`booted`), past the minutes after a boot whose steps of
  // the wall clock are the boot's own.
  const clock = { jump: 0, ran: 0, boot: 'boot-1', booted: 24 * HOUR }
  const make = (options: Partial<HousekeeperInit> = {}, log: Log = silentLog) =>
    housekeeper({
      outbox,
      retention: 10 * MIN,
      retentionMax: HOUR,
      members: () => undefined,
      processed: () => Number.MAX_SAFE_INTEGER,
      now: () => Date.now() + clock.jump,
      uptime: () => ({ boot: clock.boot, ms: clock.booted + clock.ran }),
      ...options
    })({ self, store, blocks, log, metrics: new Metrics() })
  /** Stores a head of `producer` stamped at `hlcMs`, received at `receivedAt`, acknowledging `ack` of this node's seqs. */
  const head = (producer: string, hlcMs: number, receivedAt: number, ack = 0): void => {
    store.producers.putHead({ producer, seq: 1, root: 'bafy', hlc: `${hlcMs}-0000`, acks: { [self]: ack }, signed: new Uint8Array([1]), receivedAt })
  }
  /** Publishes `n` events, their files and rows stamped by the node's wall clock (the real time plus the jump). */
  const publish = async (n: number): Promise<void> => {
    const before = store.outbox.lastSeq()
    for (let i = 0; i < n; i++) await outbox.publish({ type: 'test.plain', payload: { i } })
    const wall = Date.now() + clock.jump
    store.db.run('UPDATE outbox SET created_at = ? WHERE seq > ?', [wall, before])
    store.db.run('UPDATE events SET received_at = ? WHERE producer = ? AND seq > ?', [wall, self, before])
  }
  /** Builds a housekeeper and starts it. */
  const started = (options: Partial<HousekeeperInit> = {}, log: Log = silentLog) => {
    const hk = make(options, log)
    hk.start()
    return hk
  }
  /** A node's life before a restart: a housekeeper started, 3 events published, one run, stopped. */
  const publishRunStop = async (options: Partial<HousekeeperInit> = {}): Promise<void> => {
    const hk = started(options)
    await publish(3)
    await hk.run()
    await hk.stop()
  }
  const files = (): number => store.outbox.counts().files
  return { self, store, outbox, clock, started, publishRunStop, head, publish, files }
}

describe('housekeeping under a wall clock set ahead', () => {
  test('a jump past retention-max while running does not prune the files a member has not acknowledged', async () => {
    const { outbox, clock, started, publish, files } = await setup()
    // C is in the members list and was never heard from: it holds every file back until retention-max.
    const warnings: Array<Record<string, unknown> | undefined> = []
    const hk = started({ members: () => [C] }, { ...silentLog, warn: (_, fields) => warnings.push(fields) })
    await publish(3)
    expect((await hk.run()).pruned_files).toBe(0)
    clock.jump = 3 * HOUR
    const result = await hk.run()
    expect(result.pruned_files).toBe(0)
    expect(files()).toBe(3)
    expect(result.held_back_by).toEqual([C])
    // What the wall clock would have pruned is counted, logged once, and kept in the run's result (status).
    expect(result.kept_for_clock?.files).toBe(3)
    expect(result.kept_for_clock?.clock_ahead_ms).toBeGreaterThan(3 * HOUR - MIN)
    await hk.run()
    expect(warnings).toEqual([{ reason: 'prune_clock_ahead', files: 3, clock_ahead_ms: expect.any(Number) }])
    // Once the node has run for retention-max, the files go.
    clock.ran = HOUR + MIN
    const later = await hk.run()
    expect(later.pruned_files).toBe(3)
    expect(later.kept_for_clock).toBeUndefined()
    await hk.stop()
    await outbox.stop()
  })

  test('a jump does not make a member that was heard from lately look silent for retention-max', async () => {
    const { outbox, clock, started, head, publish, files } = await setup()
    // B's last head came 40 minutes ago and acknowledges none of this node's files: it holds them back.
    head(B, Date.now() - 40 * MIN, Date.now() - 40 * MIN)
    const hk = started({ members: () => [B] })
    await publish(3)
    // 30 minutes on, by the wall clock: the files are past retention (10 min), and B looks silent for 70 min.
    clock.jump = 30 * MIN
    const result = await hk.run()
    expect(result.pruned_files).toBe(0)
    expect(files()).toBe(3)
    expect(result.held_back_by).toEqual([B])
    await hk.stop()
    await outbox.stop()
  })

  test('a restart with the clock set ahead meanwhile keeps the files a member has not acknowledged', async () => {
    const { outbox, clock, started, publishRunStop, files } = await setup()
    await publishRunStop({ members: () => [C] })
    clock.jump = 3 * HOUR
    const second = started({ members: () => [C] })
    expect((await second.run()).pruned_files).toBe(0)
    expect(files()).toBe(3)
    await second.stop()
    await outbox.stop()
  })

  test('rows of events are not deleted early by a wall clock set ahead', async () => {
    const { store, outbox, clock, started, publish } = await setup()
    const hk = started({ eventsRetention: HOUR })
    await publish(2)
    store.db.run("UPDATE events SET state = 'done'")
    clock.jump = 3 * HOUR
    expect((await hk.run()).events_deleted).toBe(0)
    clock.ran = HOUR + MIN
    expect((await hk.run()).events_deleted).toBe(2)
    await hk.stop()
    await outbox.stop()
  })

  test('a jump does not compact superseded files a member has not acknowledged before retention has passed', async () => {
    const { self, store, outbox, clock, started, publish, files } = await setup()
    const hk = started({ members: () => [C] })
    await publish(2)
    // Seq 2 writes the one key seq 1 writes, later: seq 1 is superseded.
    store.stateKeys.record('p', self, 1, 'a', ['k'])
    store.stateKeys.record('p', self, 2, 'b', ['k'])
    clock.jump = 3 * HOUR
    expect((await hk.run()).pruned_files).toBe(0)
    clock.ran = 10 * MIN + MIN
    const result = await hk.run()
    expect({ pruned: result.pruned_files, compacted: result.compacted_files, files: files() }).toEqual({ pruned: 1, compacted: 1, files: 1 })
    await hk.stop()
    await outbox.stop()
  })

  test('two members whose heads say a year passed move nothing past a wall clock that is right', async () => {
    const { outbox, clock, started, head, publish, files } = await setup()
    const hk = started({ members: () => [B, D] })
    await publish(3)
    // The node ran 20 minutes, its clock right: the files are past retention (a candidate), not past retention-max.
    clock.jump = 20 * MIN
    clock.ran = 20 * MIN
    // Such heads are held by the clock rule (model/hlc.ts hold), never stored: stored here anyway.
    const year = Date.now() + 365 * 24 * HOUR
    head(B, year, Date.now() + clock.jump)
    head(D, year, Date.now() + clock.jump)
    const result = await hk.run()
    expect(result.pruned_files).toBe(0)
    expect(files()).toBe(3)
    await hk.stop()
    await outbox.stop()
  })
})

describe('housekeeping after a legitimate long stop', () => {
  test('a node that ran through retention-max prunes the files a member has not acknowledged, as before', async () => {
    const { outbox, clock, started, publish, files } = await setup()
    const hk = started({ members: () => [C] })
    await publish(3)
    clock.jump = 2 * HOUR
    clock.ran = 2 * HOUR
    const result = await hk.run()
    expect(result.pruned_files).toBe(3)
    expect(result.kept_for_clock).toBeUndefined()
    expect(files()).toBe(0)
    await hk.stop()
    await outbox.stop()
  })

  test("members' heads show the time of the stop: the files past retention-max go at the first run", async () => {
    const { outbox, clock, started, publishRunStop, head, files } = await setup()
    // C was never heard from; B and D came back with the node and acknowledge none of its files.
    const members = () => [B, C, D]
    await publishRunStop({ members })
    clock.jump = 3 * HOUR
    const now = Date.now() + clock.jump
    head(B, now - MIN, now)
    head(D, now - 2 * MIN, now)
    const second = started({ members })
    const result = await second.run()
    expect(result.pruned_files).toBe(3)
    expect(files()).toBe(0)
    await second.stop()
    await outbox.stop()
  })

  test("one member's head alone does not show the time where others are members: the files wait", async () => {
    const { outbox, clock, started, publishRunStop, head, files } = await setup()
    const members = () => [B, D]
    head(D, Date.now() - 20 * MIN, Date.now() - 20 * MIN)
    await publishRunStop({ members })
    clock.jump = 3 * HOUR
    // B says three hours passed (it may be right, or lying to a node whose clock was set ahead); D says nothing.
    head(B, Date.now() + clock.jump, Date.now() + clock.jump)
    const second = started({ members })
    const result = await second.run()
    expect(result.pruned_files).toBe(0)
    expect(result.kept_for_clock?.files).toBe(3)
    expect(files()).toBe(3)
    await second.stop()
    await outbox.stop()
  })

  test("the only member's head shows the time", async () => {
    const { outbox, clock, started, publishRunStop, head, files } = await setup()
    await publishRunStop({ members: () => [B] })
    clock.jump = 3 * HOUR
    head(B, Date.now() + clock.jump - MIN, Date.now() + clock.jump)
    const second = started({ members: () => [B] })
    expect((await second.run()).pruned_files).toBe(3)
    expect(files()).toBe(0)
    await second.stop()
    await outbox.stop()
  })

  test('a lone node lets its processed files go past retention by the wall clock; with an unheard member, once the machine measured retention-max since their stamp', async () => {
    const { outbox, clock, started, publishRunStop, publish, files } = await setup()
    await publishRunStop()
    clock.jump = 3 * HOUR
    // Nobody's acknowledgement is waited for: nobody misses them.
    const second = started()
    expect((await second.run()).pruned_files).toBe(3)
    await second.stop()
    // A members list naming a node never heard from: its files wait for retention-max of the time the machine
    // measured since their stamp; stamped while the clock was 3 h ahead (it was set ahead while the node was
    // stopped, the machine up), they wait 3 h more.
    await publish(2)
    const third = started({ members: () => [C] })
    clock.jump = 6 * HOUR
    expect((await third.run()).pruned_files).toBe(0)
    clock.ran = HOUR + MIN
    expect((await third.run()).pruned_files).toBe(0)
    clock.ran = 4 * HOUR + MIN
    expect((await third.run()).pruned_files).toBe(2)
    expect(files()).toBe(0)
    await third.stop()
    await outbox.stop()
  })

  test('a stop while the machine stayed up is measured by its uptime: the files past retention-max go at the first run, nothing kept for the clock', async () => {
    const { outbox, clock, started, publishRunStop, files } = await setup()
    await publishRunStop({ members: () => [C] })
    clock.jump = 3 * HOUR
    clock.ran = 3 * HOUR
    const second = started({ members: () => [C] })
    const result = await second.run()
    expect({ pruned: result.pruned_files, kept: result.kept_for_clock, files: files() }).toEqual({ pruned: 3, kept: undefined, files: 0 })
    await second.stop()
    await outbox.stop()
  })

  test("across a reboot the time the machine was down is the wall clock's, and a lag measured before it is dropped", async () => {
    const { outbox, clock, started, publishRunStop, publish, files } = await setup()
    await publishRunStop({ members: () => [C] })
    // Down 3 h, back in a new boot whose uptime starts again (and past its first minutes when the node starts).
    clock.jump = 3 * HOUR
    clock.boot = 'boot-2'
    clock.ran = 0
    const second = started({ members: () => [C] })
    expect((await second.run()).pruned_files).toBe(3)
    await publish(2)
    // Set 3 h ahead while running: kept in this boot.
    clock.jump += 3 * HOUR
    clock.ran += MIN
    const kept = await second.run()
    expect({ pruned: kept.pruned_files, kept: kept.kept_for_clock?.files }).toEqual({ pruned: 0, kept: 2 })
    await second.stop()
    // Rebooted: the wall clock's time is taken, as for any reboot (a clock set ahead across a reboot is not seen).
    clock.boot = 'boot-3'
    clock.ran = 0
    const third = started({ members: () => [C] })
    const after = await third.run()
    expect({ pruned: after.pruned_files, files: files(), kept: after.kept_for_clock }).toEqual({ pruned: 2, files: 0, kept: undefined })
    await third.stop()
    await outbox.stop()
  })

  test('a machine that boots behind (no real-time clock) and is set right by NTP in its first minutes: no lag, boot after boot', async () => {
    const { outbox, clock, started, publish, files } = await setup()
    const lags: Array<number | undefined> = []
    for (let day = 0; day < 3; day++) {
      // Boots at the time it was shut down, 16 h behind; cairn starts at once, NTP steps the clock 2 minutes later.
      clock.boot = `boot-${day + 2}`
      clock.booted = 0
      clock.ran = 0
      const behind = 16 * HOUR
      clock.jump -= behind
      const hk = started({ members: () => [C] })
      clock.jump += behind + 2 * MIN
      clock.ran += 2 * MIN
      // The first housekeeping run, 10 minutes after the start, sees the step.
      clock.ran += 8 * MIN
      await hk.run()
      await publish(1)
      clock.jump += 2 * HOUR
      clock.ran += 2 * HOUR
      const r = await hk.run()
      lags.push(r.kept_for_clock?.clock_ahead_ms)
      await hk.stop()
      clock.jump += 6 * HOUR
    }
    expect(lags).toEqual([undefined, undefined, undefined])
    // Each day's file went past retention-max (1 h) of the true time, unacknowledged.
    expect(files()).toBe(0)
    await outbox.stop()
  })

  test('a machine that boots ahead (a real-time clock kept in local time) and is set back by NTP in its first minutes: a step ahead later is a clock set ahead', async () => {
    const { outbox, clock, started, publish } = await setup()
    // Boots 2 h ahead; cairn starts a minute in, NTP steps the clock back 2 minutes later, a run at minute 11.
    clock.booted = 0
    clock.ran = MIN
    clock.jump = 2 * HOUR
    const hk = started({ members: () => [C] })
    clock.ran = 3 * MIN
    clock.jump = 0
    clock.ran = 11 * MIN
    await hk.run()
    await publish(3)
    // Half an hour on, the clock is set 2 h ahead: the files are 2.5 h old by the wall clock, 30 min by the
    // uptime; retention-max is 1 h.
    clock.ran += 30 * MIN
    clock.jump = 30 * MIN + 2 * HOUR
    const r = await hk.run()
    expect({ pruned: r.pruned_files, kept: r.kept_for_clock?.files }).toEqual({ pruned: 0, kept: 3 })
    await hk.stop()
    await outbox.stop()
  })

  test("a step after the boot's first minutes is a clock set ahead, though the last reading fell in them (stopped since, or a long interval)", async () => {
    const { outbox, clock, started, publishRunStop } = await setup()
    clock.booted = 0
    clock.ran = 5 * MIN
    await publishRunStop({ members: () => [C] })
    // Stopped from minute 5 to hour 5 of the boot, and set 3 h ahead meanwhile: the files are 8 h old by the wall
    // clock, 5 h by the uptime, and retention-max is 6 h.
    clock.ran = 5 * HOUR
    clock.jump = 5 * HOUR - 5 * MIN + 3 * HOUR
    const second = started({ members: () => [C], retentionMax: 6 * HOUR })
    const stopped = await second.run()
    expect({ pruned: stopped.pruned_files, kept: stopped.kept_for_clock?.files }).toEqual({ pruned: 0, kept: 3 })
    await second.stop()
    // Running, with a reading at minute 14 and the next at minute 44 (a 30 min housekeeping interval): a step of 3 h
    // between them. The files are 3.5 h old by the wall clock, 30 min by the uptime; retention-max is 1 h.
    clock.boot = 'boot-2'
    clock.jump = 0
    clock.ran = 14 * MIN
    const third = started({ members: () => [C] })
    await third.run()
    clock.ran = 44 * MIN
    clock.jump = 30 * MIN + 3 * HOUR
    const running = await third.run()
    expect({ pruned: running.pruned_files, kept: running.kept_for_clock?.files }).toEqual({ pruned: 0, kept: 3 })
    await third.stop()
    await outbox.stop()
  })

  test("the housekeeper reads the clock when the boot's first minutes are up: a step in them is the boot's own, whenever the next run comes", async () => {
    const { store, outbox, clock, started, publish, files } = await setup()
    await publish(3)
    // Started 50 ms before the boot's first 15 minutes are up (the uptime moves with the real time from there).
    const t0 = performance.now()
    const hk = started({ members: () => [C], uptime: () => ({ boot: 'boot-9', ms: 15 * MIN - 50 + (performance.now() - t0) + clock.ran }) })
    // NTP steps it 2 h ahead at once, before the reading due at 15 minutes (nothing awaited in between), which sees
    // that; the next run comes 30 min later. The files are 2.5 h old by the wall clock, 30 min by the uptime;
    // retention-max is 1 h.
    clock.jump = 2 * HOUR
    await waitFor('the reading due at 15 minutes to record the step', () => (parseRecordedClock(store.meta.get(PRUNE_CLOCK_KEY))?.wall ?? 0) > Date.now() + HOUR)
    clock.ran = 30 * MIN
    clock.jump += 30 * MIN
    const r = await hk.run()
    expect({ kept: r.kept_for_clock, pruned: r.pruned_files, files: files() }).toEqual({ kept: undefined, pruned: 3, files: 0 })
    await hk.stop()
    await outbox.stop()
  })

  test('a node stopped every night keeps rows past events-retention no longer than the setting, with or without reboots', async () => {
    for (const reboot of [false, true]) {
      const { store, outbox, clock, started, publish } = await setup()
      for (let day = 0; day < 30; day++) {
        const hk = started({ eventsRetention: HOUR })
        for (let h = 0; h < 8; h++) {
          await publish(1)
          store.db.run("UPDATE events SET state = 'done'")
          clock.jump += HOUR
          clock.ran += HOUR
          await hk.run()
        }
        await hk.stop()
        clock.jump += 16 * HOUR
        if (reboot) {
          clock.boot = `boot-${day + 2}`
          clock.ran = 0
        } else clock.ran += 16 * HOUR
      }
      // One event an hour, rows go an hour after they were received: at most the last one is left (it goes when
      // the real time moved on by a millisecond between its publish and the run).
      expect({ reboot, kept: store.db.get<{ n: number }>('SELECT count(*) AS n FROM events')!.n <= 1 }).toEqual({ reboot, kept: true })
      await outbox.stop()
    }
  })

  test('NTP stepping a slow clock ahead a little at a time adds up to no lag; a clock set back and then right again is no jump', async () => {
    const { outbox, clock, started, publish, files } = await setup()
    const hk = started({ members: () => [C] })
    await publish(3)
    // 200 steps of 2 s, each after 10 minutes of uptime: 400 s ahead of the uptime in all.
    for (let i = 0; i < 200; i++) {
      clock.ran += 10 * MIN
      clock.jump += 10 * MIN + 2000
      await hk.run()
    }
    let last = await hk.run()
    expect(last.kept_for_clock).toBeUndefined()
    expect(files()).toBe(0)
    await publish(2)
    clock.jump -= 2 * HOUR
    await hk.run()
    clock.jump += 2 * HOUR
    clock.ran += 11 * MIN
    last = await hk.run()
    expect(last.kept_for_clock).toBeUndefined()
    await hk.stop()
    await outbox.stop()
  })
})

describe('retention-max', () => {
  test('a superseded file that a plugin without keys also applied goes past retention-max unacknowledged, as a plain file does', async () => {
    const { self, store, outbox, clock, started, publish, files } = await setup()
    const hk = started({ members: () => [C] })
    await publish(3)
    // Seq 2 supersedes seq 1's key for plugin p; plugin q applied both without keys; seq 3 is plain.
    store.stateKeys.record('p', self, 1, 'a', ['k'])
    store.stateKeys.record('q', self, 1, 'a', [''])
    store.stateKeys.record('p', self, 2, 'b', ['k'])
    store.stateKeys.record('q', self, 2, 'b', [''])
    clock.jump = 2 * HOUR
    clock.ran = 2 * HOUR
    const result = await hk.run()
    // Seq 2 is the newest of its key: kept while the key exists.
    expect({ pruned: result.pruned_files, compacted: result.compacted_files, files: files() }).toEqual({ pruned: 2, compacted: 0, files: 1 })
    await hk.stop()
    await outbox.stop()
  })
})

describe("the machine's uptime", () => {
  test('a reading of /proc that fails now and then (out of file descriptors) adds no lag to the guarded clock', () => {
    const t = { wall: Date.UTC(2026, 0, 1), up: HOUR, fail: false }
    const read = (path: string): string => {
      if (t.fail) throw Object.assign(new Error(`EMFILE: too many open files, open '${path}'`), { code: 'EMFILE' })
      return path.endsWith('boot_id') ? 'boot-1\n' : `${(t.up / 1000).toFixed(2)} 123.45\n`
    }
    // The process's monotonic clock is the uptime less a suspend of a minute (it does not count suspend).
    const clock = new PruneClock(
      () => t.wall,
      uptimeReader(read, () => t.up - MIN),
      undefined
    )
    clock.read()
    const lags: number[] = []
    for (const fail of [true, false, true, true, false]) {
      t.wall += 10 * MIN
      t.up += 10 * MIN
      t.fail = fail
      const r = clock.read()
      lags.push(r.wall - r.guarded)
    }
    expect(lags).toEqual([0, 0, 0, 0, 0])
  })
})
