import { runtimeName } from './runtime.ts'

/** How often the resident set is compared with the target. */
export const MEMORY_CHECK_MS = 1000

/** What a memory target needs from the process; tests give their own. */
export interface MemoryProbe {
  /** @returns the process's resident set in bytes */
  rss(): number
  /** runs a full, synchronous collection of the JavaScript heap */
  collect(): void
}

/** @returns the running process's probe, or undefined where the runtime cannot collect on demand (Deno without --expose-gc) */
export function processMemoryProbe(): MemoryProbe | undefined {
  if (runtimeName() === 'bun') {
    return {
      rss: () => process.memoryUsage.rss(),
      collect: () => {
        Bun.gc(true)
      }
    }
  }
  const gc = (globalThis as { gc?: () => void }).gc
  return gc == null ? undefined : { rss: () => process.memoryUsage.rss(), collect: gc }
}

/**
 * Runs a full collection when the resident set is over a target, at most once per `minIntervalMs`.
 * JavaScriptCore paces its collections by the machine's RAM: on a large machine it lets garbage grow to
 * several times the live heap before collecting it. This bounds that growth by a size the operator sets,
 * for the CPU of one full collection (tens to hundreds of ms) per interval at most. The interval bounds
 * the cost when the live set itself is over the target.
 */
export class MemoryTarget {
  private last = -Infinity

  constructor(
    private readonly target: number,
    private readonly minIntervalMs: number,
    private readonly probe: MemoryProbe,
    private readonly now: () => number = () => performance.now()
  ) {}

  /** @returns the milliseconds of the collection it ran, or undefined when it ran none */
  check(): number | undefined {
    const t = this.now()
    if (t - this.last < this.minIntervalMs || this.probe.rss() <= this.target) return undefined
    this.probe.collect()
    this.last = this.now()
    return this.last - t
  }
}
