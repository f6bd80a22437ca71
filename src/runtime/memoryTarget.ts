import { totalmem } from 'node:os'
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

/**
 * A container or cgroup memory limit below which a node can be killed by a burst or a catch-up: the engine
 * sizes its heap by the limit, and at 128 MiB the node receiving a burst of 5,000 events was killed, at 144 MiB
 * every burst and a catch-up of 100,000 got through (BENCHMARKS.md, "Memory limits").
 */
export const LOW_MEMORY_LIMIT = 160 * 1024 * 1024
/** The limit from which a node runs at about its unlimited speed (the same measurements). */
export const ROOMY_MEMORY_LIMIT = 256 * 1024 * 1024

/**
 * @returns the memory limit of the process's container or cgroup in bytes, or undefined when it has none or
 * the runtime cannot tell (the runtimes report the machine's RAM when no limit applies)
 */
export function memoryLimit(): number | undefined {
  const constrained = (process as { constrainedMemory?: () => number | undefined }).constrainedMemory
  let limit: number | undefined
  try {
    limit = typeof constrained === 'function' ? constrained.call(process) : undefined
  } catch {
    return undefined
  }
  return limit != null && limit > 0 && limit < totalmem() ? limit : undefined
}

/** @returns the warning a node logs at start under a memory `limit` (bytes) too small for it, else undefined */
export function memoryLimitWarning(limit: number | undefined): string | undefined {
  if (limit == null || limit >= LOW_MEMORY_LIMIT) return undefined
  const mib = (n: number): string => `${Math.round(n / (1024 * 1024))} MiB`
  return `the memory limit of this node's container or cgroup is ${mib(limit)}: below ${mib(LOW_MEMORY_LIMIT)} a burst of publishes or a catch-up can get the node killed, and below ${mib(ROOMY_MEMORY_LIMIT)} it runs slower (docs/operations.md, "Memory and CPU")`
}
