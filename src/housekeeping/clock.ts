import { readFileSync } from 'node:fs'

/** The `meta` key of the guarded clock's last record (RecordedClock as JSON). */
export const PRUNE_CLOCK_KEY = 'prune_clock'

/** The time housekeeping judges by, read once per run. */
export interface PruneTime {
  /** this node's wall clock */
  wall: number
  /** the guarded clock (PruneClock): never past `wall` */
  guarded: number
}

/**
 * A clock that no setting of the system clock moves: the time since the machine booted (suspend included
 * where the system counts it), and which boot. Two readings of the same boot differ by the time that passed.
 */
export interface Uptime {
  boot: string
  ms: number
}

/** What the guarded clock keeps in cairn.db, for the next start to go on from. */
export interface RecordedClock {
  /** the guarded time */
  time: number
  /** the wall clock then */
  wall: number
  /** the uptime then */
  boot: string
  up: number
}

/**
 * The least lag kept: a wall clock stepped ahead by less (NTP correcting a clock that runs slow, a step at a
 * time) is taken as right, so that such steps never add up to a lag.
 */
const LAG_TOLERANCE_MS = 10_000

/**
 * How long after a boot a step of the wall clock is taken as the boot's own: a machine without a real-time clock
 * (it boots at the time it was shut down), or one whose hardware clock is off, is set right by NTP in its first
 * minutes, often after cairn started.
 */
const BOOT_SETTLE_MS = 15 * 60_000

/**
 * How late past BOOT_SETTLE_MS a reading may come and still take the steps it sees as the boot's own: the reading
 * the housekeeper schedules for the end of those minutes (PruneClock.settleDue), on a busy event loop.
 */
const SETTLE_LATE_MS = 60_000

/** A boot of this process alone, for a system that does not say which boot it is in: its restarts count as reboots. */
const PROCESS_BOOT = `process:${process.pid}:${Date.now()}`

/**
 * @returns a reader of the system's boot and the time since it (Linux: /proc/sys/kernel/random/boot_id and
 * /proc/uptime, which counts suspend); elsewhere this process's own monotonic clock, so that only the time it ran
 * is measured. A reading that fails after one that did not (out of file descriptors, say) is the same boot, moved
 * on by this process's monotonic clock since that one: a boot that changed for one reading would count the time
 * around it as a clock set ahead, a lag kept for good.
 */
export function uptimeReader(read: (path: string) => string = (path) => readFileSync(path, 'utf8'), monotonic: () => number = () => performance.now()): () => Uptime {
  let last: { up: Uptime; at: number } | undefined
  return () => {
    const at = monotonic()
    try {
      const boot = read('/proc/sys/kernel/random/boot_id').trim()
      const ms = Number.parseFloat(read('/proc/uptime').split(' ')[0]) * 1000
      if (boot !== '' && Number.isFinite(ms)) {
        last = { up: { boot, ms }, at }
        return last.up
      }
    } catch {}
    if (last != null) return { boot: last.up.boot, ms: last.up.ms + Math.max(0, at - last.at) }
    return { boot: PROCESS_BOOT, ms: at }
  }
}

/** This machine's uptime (uptimeReader). */
export const systemUptime: () => Uptime = uptimeReader()

/**
 * The clock that ages what housekeeping lets go without every member's acknowledgement (docs/operations.md,
 * "Retention and the clock"). It moves by the machine's uptime, which no setting of the system clock moves,
 * across restarts of the node within one boot too (its last reading is kept in cairn.db); heads of members
 * (`membersTime`) move it forward to what they show. Invariant: it is never ahead of the wall clock, and it
 * falls behind the wall clock only by what the wall clock moved more than the uptime within this boot, after
 * its first BOOT_SETTLE_MS, by more than LAG_TOLERANCE_MS (a clock set ahead), until the wall clock is set
 * back, members' heads show that time, or the machine reboots: across a reboot the time the machine was down
 * cannot be measured, and the wall clock's is taken. So a wall clock set ahead while the machine is up ages
 * nothing, and the lag is bounded by the steps of one boot: no stop or reboot adds to it.
 */
export class PruneClock {
  private readonly wall: () => number
  private readonly uptime: () => Uptime
  /** the guarded time at `up` (it may be ahead of a wall clock set back) */
  private time: number
  private boot: string
  private up: number

  /** @param recorded what `recorded()` gave before this start; undefined in a data directory with none */
  constructor(wall: () => number, uptime: () => Uptime, recorded: RecordedClock | undefined) {
    this.wall = wall
    this.uptime = uptime
    const now = uptime()
    const w = wall()
    // Rebooted (or no record): the wall clock's time.
    const sameBoot = recorded != null && recorded.boot === now.boot && now.ms >= recorded.up
    this.time = sameBoot ? recorded.time + (now.ms - recorded.up) : w
    this.boot = now.boot
    this.up = sameBoot ? recorded.up : now.ms
    this.settle(w, now.ms)
    this.up = now.ms
  }

  /**
   * Takes the wall clock's steps since the last reading as right when both readings are early in the boot (the
   * steps fell in its first minutes), or when they are within the tolerance. A reading early in the boot and the
   * next one long after (the node stopped meanwhile, or a long housekeeping interval) say nothing of when a step
   * fell between them: it is taken as a clock set ahead. A step back early in the boot is the boot's own too (a
   * machine booting ahead, its real-time clock kept in local time, set back by NTP): the guarded clock follows
   * it, or it would stay ahead of the true time all the boot and a clock set ahead by as much later go uncaught.
   */
  private settle(wall: number, upNow: number): void {
    const early = this.up < BOOT_SETTLE_MS && upNow <= BOOT_SETTLE_MS + SETTLE_LATE_MS
    if (early) this.time = wall
    else if (wall - this.time <= LAG_TOLERANCE_MS) this.time = Math.max(this.time, wall)
  }

  /**
   * @returns how long until the boot's first minutes are up, when the last reading fell in them: a reading then
   * (the housekeeper schedules one) takes the steps of those minutes as the boot's own; undefined past them
   */
  settleDue(): number | undefined {
    return this.up < BOOT_SETTLE_MS ? BOOT_SETTLE_MS - this.up : undefined
  }

  /** @returns the wall clock and the guarded clock, moved to at least `shown` (members' heads) */
  read(shown?: number): PruneTime {
    const now = this.uptime()
    const rebooted = now.boot !== this.boot
    const elapsed = rebooted ? 0 : Math.max(0, now.ms - this.up)
    this.boot = now.boot
    // Not held to the wall clock: after a wall clock set back, it goes on at the time it measured, so that the
    // wall clock set right again is no jump ahead.
    this.time = Math.max(this.time + elapsed, shown ?? 0)
    const wall = this.wall()
    // Another boot: the wall clock's time, as at a start after a reboot.
    if (rebooted) this.time = Math.max(this.time, wall)
    else this.settle(wall, now.ms)
    this.up = now.ms
    return { wall, guarded: Math.min(wall, this.time) }
  }

  /** @returns what to keep in cairn.db, for the next start to go on from */
  recorded(): RecordedClock {
    const { wall } = this.read()
    return { time: this.time, wall, boot: this.boot, up: this.up }
  }
}

/** @returns a record kept by `PruneClock.recorded`, or undefined for none or one this cairn cannot read */
export function parseRecordedClock(text: string | undefined): RecordedClock | undefined {
  if (text == null) return undefined
  try {
    const r = JSON.parse(text) as Partial<RecordedClock>
    const finite = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x)
    return finite(r.time) && finite(r.wall) && finite(r.up) && typeof r.boot === 'string' ? { time: r.time, wall: r.wall, boot: r.boot, up: r.up } : undefined
  } catch {
    return undefined
  }
}
