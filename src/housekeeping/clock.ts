/** The `meta` key of the guarded clock's last recorded time (ms). */
export const PRUNE_CLOCK_KEY = 'prune_clock'

/** The time housekeeping judges by, read once per run. */
export interface PruneTime {
  /** this node's wall clock */
  wall: number
  /** the guarded clock (PruneClock): never past `wall` */
  guarded: number
}

/**
 * The clock that ages what housekeeping lets go without every member's acknowledgement (docs/operations.md,
 * "Retention and the clock"). It starts from the time it last recorded in cairn.db (kept across restarts;
 * the wall clock's in a data directory with none) and moves on by the elapsed time of a monotonic clock,
 * which no setting of the system clock moves; heads of members (`membersTime`) move it forward to what they
 * show. Invariant: it is never ahead of the wall clock, and never ahead of the time it recorded plus the
 * monotonic time elapsed since, unless members' heads show that time. So a wall clock set ahead, while the
 * node runs or while it is stopped, ages nothing; a node that was stopped counts the stop once members'
 * heads show it, and otherwise not at all (its files go that much later).
 */
export class PruneClock {
  private readonly wall: () => number
  private readonly monotonic: () => number
  /** the guarded time at `at` on the monotonic clock (it may be ahead of a wall clock set back) */
  private time: number
  private at: number

  /** @param recorded the time recorded last (`recorded()` of an earlier run), undefined for the wall clock's */
  constructor(wall: () => number, monotonic: () => number, recorded: number | undefined) {
    this.wall = wall
    this.monotonic = monotonic
    this.time = recorded ?? wall()
    this.at = monotonic()
  }

  /** @returns the wall clock and the guarded clock, moved to at least `shown` (members' heads) */
  read(shown?: number): PruneTime {
    const at = this.monotonic()
    this.time = Math.max(this.time + Math.max(0, at - this.at), shown ?? 0)
    this.at = at
    const wall = this.wall()
    return { wall, guarded: Math.min(wall, this.time) }
  }

  /** @returns the time to record in cairn.db, for the next start to go on from */
  recorded(): number {
    this.read()
    return this.time
  }
}
