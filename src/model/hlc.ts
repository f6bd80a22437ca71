/**
 * A hybrid logical clock: wall-clock milliseconds plus a counter, so that timestamps stay close
 * to real time, never go backwards on a node, and order after every timestamp the node has seen.
 * The text form `<ms, 13 digits>-<counter, 4 hex>` sorts the same as the clock.
 */
export class HybridClock {
  private ms = 0
  private counter = 0
  private readonly now: () => number

  constructor(now: () => number = Date.now) {
    this.now = now
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

  /** Moves the clock past a timestamp seen from another node (ignored when malformed). */
  observe(hlc: string): void {
    const m = /^(\d{13})-([0-9a-f]{4})$/.exec(hlc)
    if (m == null) return
    const ms = Number(m[1])
    const counter = parseInt(m[2], 16)
    // A peer far in the future must not drag this clock with it.
    if (ms > this.now() + 60_000) return
    if (ms > this.ms || (ms === this.ms && counter > this.counter)) {
      this.ms = ms
      this.counter = counter
    }
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
