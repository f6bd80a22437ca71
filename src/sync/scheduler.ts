import { backoff } from '../util/backoff.ts'

/** What a walk is handed: when to give up, and how to tell that it is not stuck. */
export interface WalkHandle {
  /** aborts when the scheduler stops or a newer head supersedes the walk */
  signal: AbortSignal
  /** marks the walk as making progress (a block arrived) */
  progressed: () => void
}

/** What the scheduler runs and tells. */
export interface SchedulerInit {
  walk: (producer: string, handle: WalkHandle) => Promise<void>
  /** a walk failed; it is retried after `delay` ms */
  onFailure: (producer: string, err: Error, delay: number) => void
  /** no walk is under way or due any more */
  onIdle: () => void
}

/** A walk that has made no progress for this long gives way to a newer head at once. */
const STUCK_MS = 1000
/** A walk held for an event's clock is tried again at least this often (the skew may change, the clock may jump). */
const HOLD_RECHECK_MS = 60 * 60_000

/**
 * Runs at most one walk per producer at a time. A walk asked for while one is under way runs right
 * after it (coalesced); a failed walk is retried with exponential backoff.
 */
export class WalkScheduler {
  private readonly init: SchedulerInit
  private readonly running = new Map<string, Promise<void>>()
  private readonly dirty = new Set<string>()
  private readonly retry = new Map<string, ReturnType<typeof setTimeout>>()
  private readonly failures = new Map<string, number>()
  /** producers whose pending retry waits for a held event's clock (a subset of `retry`'s keys) */
  private readonly holding = new Set<string>()
  /** per producer, the walk under way and when it last made progress */
  private readonly walks = new Map<string, { abort: AbortController; progress: number }>()
  private stopped = false
  private abort = new AbortController()
  private wasBusy = false

  constructor(init: SchedulerInit) {
    this.init = init
  }

  /** Accepts work again after `stop()`. */
  start(): void {
    this.stopped = false
    this.abort = new AbortController()
  }

  /** Stops scheduling work, aborts the walks under way and waits for them. */
  async stop(): Promise<void> {
    this.stopped = true
    this.abort.abort()
    for (const t of this.retry.values()) clearTimeout(t)
    this.retry.clear()
    this.holding.clear()
    await Promise.allSettled([...this.running.values()])
    this.idleCheck()
  }

  /** @returns whether a walk is under way or due */
  get busy(): boolean {
    return this.running.size > 0 || this.dirty.size > 0 || this.retry.size > 0
  }

  /** Walks `producer`'s tree soon; coalesces with a walk under way. */
  schedule(producer: string): void {
    if (this.stopped) return
    if (this.running.has(producer)) {
      this.dirty.add(producer)
      return
    }
    const pending = this.retry.get(producer)
    // A newer head does not hurry a walk held for its clock: the held event comes first in seq order.
    if (pending != null && this.holding.has(producer)) return
    if (pending != null) {
      clearTimeout(pending)
      this.retry.delete(producer)
    }
    this.wasBusy = true
    const run = this.walkLoop(producer).finally(() => {
      this.running.delete(producer)
      this.idleCheck()
    })
    this.running.set(producer, run)
  }

  /**
   * Aborts the walk of `producer` under way if it has waited over a second (for a block of an older root,
   * one that its relays may never have held), so that it gives way to a newer head instead of waiting
   * out the fetch timeout.
   */
  supersede(producer: string): void {
    const walk = this.walks.get(producer)
    if (walk != null && performance.now() - walk.progress > STUCK_MS) walk.abort.abort(new Error('superseded by a newer head'))
  }

  private async walkLoop(producer: string): Promise<void> {
    do {
      this.dirty.delete(producer)
      const walk = { abort: new AbortController(), progress: performance.now() }
      this.walks.set(producer, walk)
      try {
        await this.init.walk(producer, {
          signal: AbortSignal.any([this.abort.signal, walk.abort.signal]),
          progressed: () => {
            walk.progress = performance.now()
          }
        })
        this.failures.delete(producer)
      } catch (err) {
        if (this.stopped) return
        // Superseded by a newer head: walk to that one now, this is no failure.
        if (walk.abort.signal.aborted && this.dirty.has(producer)) continue
        const attempt = (this.failures.get(producer) ?? 0) + 1
        this.failures.set(producer, attempt)
        // An event held for its clock is walked again when it comes within the skew (re-checked at least
        // hourly), not on every backoff or new head: each walk would list and read the same files again.
        const heldFor = (err as { retryInMs?: unknown }).retryInMs
        const held = typeof heldFor === 'number' && heldFor > 0 ? Math.min(heldFor, HOLD_RECHECK_MS) : undefined
        const delay = Math.max(backoff(attempt, { base: 1000, max: 30_000 }), held ?? 0)
        if (held != null) this.holding.add(producer)
        this.init.onFailure(producer, err as Error, delay)
        const timer = setTimeout(() => {
          this.retry.delete(producer)
          this.holding.delete(producer)
          this.schedule(producer)
        }, delay)
        this.retry.set(producer, timer)
        return
      } finally {
        this.walks.delete(producer)
      }
    } while (this.dirty.has(producer) && !this.stopped)
  }

  /** Tells once when the scheduler goes from busy to idle. */
  private idleCheck(): void {
    if (!this.wasBusy || this.busy) return
    this.wasBusy = false
    this.init.onIdle()
  }
}
