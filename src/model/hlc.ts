import { ClockWatch, formatMs } from './clockSkew.ts'

/** The default --max-clock-skew: how far ahead of this node's clock a timestamp may be. */
export const DEFAULT_MAX_CLOCK_SKEW_MS = 60_000

const HLC = /^(\d{13})-([0-9a-f]{4})$/

/** @returns the wall-clock milliseconds of an HLC timestamp, or undefined when it is malformed */
export function hlcMs(hlc: string): number | undefined {
  const m = HLC.exec(hlc)
  return m == null ? undefined : Number(m[1])
}

/**
 * A hybrid logical clock: wall-clock milliseconds plus a counter, so that timestamps stay close
 * to real time, never go backwards on a node, and order after every timestamp the node has seen.
 * The text form `<ms, 13 digits>-<counter, 4 hex>` sorts the same as the clock.
 */
export class HybridClock {
  private ms = 0
  private counter = 0
  private readonly now: () => number
  /** how far ahead of `now` a timestamp from elsewhere may be before it is held */
  readonly maxSkewMs: number
  /** who is ahead, and where the network's time is, as seen from here */
  readonly watch: ClockWatch

  constructor(now: () => number = Date.now, options: { maxSkewMs?: number } = {}) {
    this.now = now
    this.maxSkewMs = options.maxSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS
    this.watch = new ClockWatch(now, this.maxSkewMs)
  }

  /** @returns this node's wall clock, in milliseconds */
  wall(): number {
    return this.now()
  }

  /** @returns a new timestamp, later than every one issued or observed before */
  tick(): string {
    const wall = this.now()
    if (wall > this.ms) {
      this.ms = wall
      this.counter = 0
    } else {
      this.bump()
    }
    return this.format()
  }

  /**
   * @returns how many milliseconds `hlc` is ahead of this node's wall clock when that is more than
   * max-clock-skew (such a timestamp is held, never ordered), else undefined
   */
  tooFarAhead(hlc: string): number | undefined {
    const ms = hlcMs(hlc)
    if (ms == null) return undefined
    const ahead = ms - this.now()
    return ahead > this.maxSkewMs ? ahead : undefined
  }

  /**
   * The clock rule: a timestamp of `producer` more than max-clock-skew ahead of this node's clock is
   * held (its head not stored, its event not ingested) until this clock catches up, and recorded in
   * `watch` for the operator.
   *
   * @returns a message saying how far ahead it is when it must be held, else undefined
   */
  hold(producer: string, hlc: string): string | undefined {
    const ahead = this.tooFarAhead(hlc)
    if (ahead == null) return undefined
    this.watch.held(producer, ahead)
    return `${producer} stamped ${hlc}, ${formatMs(ahead)} ahead of this node's clock (more than --max-clock-skew ${formatMs(this.maxSkewMs)}): held until this clock catches up`
  }

  /**
   * Moves the clock past a timestamp seen from another node, but only one at most half of max-clock-skew
   * ahead: a node whose clock runs ahead (by accident or on purpose) drags the others by that much at most,
   * so what they then stamp stays within the skew of every node less than half of it behind.
   */
  observe(hlc: string): void {
    const m = HLC.exec(hlc)
    if (m == null) return
    const ms = Number(m[1])
    const counter = parseInt(m[2], 16)
    if (ms > this.now() + this.maxSkewMs / 2) return
    if (ms > this.ms || (ms === this.ms && counter > this.counter)) {
      this.ms = ms
      this.counter = counter
    }
  }

  /**
   * Moves the clock past this node's own last timestamp (its last head's, kept in cairn.db), however far ahead of
   * the wall clock: a node's timestamps never go backwards, across restarts too, as its peers take a head stamped
   * at or before the one they hold as old, and order its events by them (a wall clock set back while the node was
   * stopped, an NTP step or a clock reset at boot, would otherwise have its next events ignored until it published
   * again). A start cannot tell that clock being behind now from its having been that far ahead then: in both it
   * goes on from the head, and in the second its peers hold what it stamps until their clocks reach it.
   *
   * @returns how many milliseconds that timestamp is ahead of the wall clock (0 when it is not)
   */
  resume(hlc: string): number {
    const m = HLC.exec(hlc)
    if (m == null) return 0
    const ms = Number(m[1])
    const counter = parseInt(m[2], 16)
    if (ms > this.ms || (ms === this.ms && counter > this.counter)) {
      this.ms = ms
      this.counter = counter
    }
    return Math.max(0, ms - this.now())
  }

  /**
   * @returns how many milliseconds the timestamps this node stamps next are ahead of its wall clock: more than
   * a moment only after `resume` went on from a last head stamped ahead (its clock was ahead when it stamped that,
   * or is behind now), or `observe` followed a peer within half of max-clock-skew
   */
  stampsAhead(): number {
    return Math.max(0, this.ms - this.now())
  }

  private bump(): void {
    this.counter++
    if (this.counter > 0xffff) {
      this.ms++
      this.counter = 0
    }
  }

  private format(): string {
    return `${String(this.ms).padStart(13, '0')}-${this.counter.toString(16).padStart(4, '0')}`
  }
}
