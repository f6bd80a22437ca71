import { readFileSync } from 'node:fs'
import { totalmem } from 'node:os'
import { join } from 'node:path'
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
 * A limit the engine does not see matters below this: without one a node that falls far behind peaks at about
 * 600 MiB (docs/operations.md advises 1 GiB), so a larger one is never reached.
 */
export const UNSEEN_MEMORY_LIMIT = 1024 * 1024 * 1024

/** The memory limit a node runs under. */
export interface MemoryLimit {
  /** the lowest limit on the process's cgroup and its ancestors, in bytes */
  bytes: number
  /**
   * whether the runtime reports it (it reads the process's own cgroup only), and so the engine sizes its heap by
   * it; false for a lower limit set only on an ancestor (a systemd slice, a pod around the container)
   */
  seen: boolean
}

/** Where the memory cgroup files are: the kernel's view of this process and the cgroup file systems. */
export interface CgroupFiles {
  /** the text of /proc/self/cgroup */
  self: string
  /** where cgroup v1's memory hierarchy is mounted */
  v1: string
  /** where the cgroup v2 hierarchy is mounted */
  v2: string
}

/** v1 writes "no limit" as the largest multiple of the page size below 2^63. */
const V1_UNLIMITED = 2 ** 62

/**
 * @returns the lowest memory limit on the process's cgroup and its ancestors (cgroup v1's memory controller, or
 * v2), in bytes, or undefined when none applies or there are no cgroups to read (not Linux)
 */
export function cgroupMemoryLimit(files?: CgroupFiles): number | undefined {
  let f = files
  if (f == null) {
    try {
      f = { self: readFileSync('/proc/self/cgroup', 'utf8'), v1: '/sys/fs/cgroup/memory', v2: '/sys/fs/cgroup' }
    } catch {
      return undefined
    }
  }
  const lines = f.self.split('\n').map((l) => l.split(':'))
  const v1 = lines.find((l) => l.length >= 3 && l[1].split(',').includes('memory'))
  const v2 = lines.find((l) => l.length >= 3 && l[0] === '0' && l[1] === '')
  const [base, file, path] = v1 != null ? [f.v1, 'memory.limit_in_bytes', v1.slice(2).join(':')] : v2 != null ? [f.v2, 'memory.max', v2.slice(2).join(':')] : []
  if (base == null || file == null || path == null) return undefined
  // Inside a cgroup namespace the path is relative to its root; a path that leaves it ("/../x") names a cgroup
  // outside what is mounted here, whose ancestors cannot be read: none of the cgroups under the mount is one.
  const parts = path.split('/').filter((p) => p !== '' && p !== '.')
  if (parts.includes('..')) return undefined
  let lowest: number | undefined
  // From the process's own cgroup up to the hierarchy's root.
  for (let n = parts.length; n >= 0; n--) {
    let text: string
    try {
      text = readFileSync(join(base, ...parts.slice(0, n), file), 'utf8').trim()
    } catch {
      continue
    }
    const bytes = Number(text)
    if (text === 'max' || !Number.isFinite(bytes) || bytes <= 0 || bytes >= V1_UNLIMITED) continue
    lowest = Math.min(lowest ?? Infinity, bytes)
  }
  return lowest
}

/** @returns the limit the runtime reports (its own cgroup's), or undefined when it reports none or cannot tell */
function runtimeMemoryLimit(): number | undefined {
  const constrained = (process as { constrainedMemory?: () => number | undefined }).constrainedMemory
  let limit: number | undefined
  try {
    limit = typeof constrained === 'function' ? constrained.call(process) : undefined
  } catch {
    return undefined
  }
  // The runtimes report the machine's RAM (Bun) or 2^64 (Node) when no limit applies.
  return limit != null && limit > 0 && limit < totalmem() ? limit : undefined
}

/**
 * @returns the memory limit of the process's container or cgroup (the lowest of the runtime's answer and the
 * cgroup hierarchy's), or undefined when none applies or neither can tell
 */
export function memoryLimit(runtime = runtimeMemoryLimit(), hierarchy = cgroupMemoryLimit(), ram = totalmem()): MemoryLimit | undefined {
  // A limit at or over the machine's RAM limits nothing, and the runtime reports none for it: not one the engine misses.
  const bytes = Math.min(runtime ?? Infinity, hierarchy != null && hierarchy < ram ? hierarchy : Infinity)
  if (!Number.isFinite(bytes)) return undefined
  return { bytes, seen: runtime != null && runtime <= bytes }
}

const mib = (n: number): string => `${Math.round(n / (1024 * 1024))} MiB`

/** @returns the warnings a node logs at start under `limit`, with their reasons (none when it leaves room and the engine sees it) */
export function memoryLimitWarnings(limit: MemoryLimit | undefined): Array<{ reason: string; message: string }> {
  const out: Array<{ reason: string; message: string }> = []
  if (limit == null) return out
  if (limit.bytes < LOW_MEMORY_LIMIT) {
    out.push({
      reason: 'memory_limit_low',
      message: `the memory limit of this node's container or cgroup is ${mib(limit.bytes)}: below ${mib(LOW_MEMORY_LIMIT)} a burst of publishes or a catch-up can get the node killed, and below ${mib(ROOMY_MEMORY_LIMIT)} it runs slower (docs/operations.md, "Memory and CPU")`
    })
  }
  if (!limit.seen && limit.bytes < UNSEEN_MEMORY_LIMIT) {
    out.push({
      reason: 'memory_limit_unseen',
      message: `a memory limit of ${mib(limit.bytes)} applies to this node through a parent cgroup (a slice, a pod), which the JavaScript engine does not read: it sizes its heap as if the limit were not there, so the kernel may kill the node instead; set the limit on the node's own cgroup (the container's or the service's: docs/operations.md, "Memory and CPU")`
    })
  }
  return out
}
