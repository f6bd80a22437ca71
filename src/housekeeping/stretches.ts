/** How long (ms) a housekeeping phase works at a stretch before it lets the event loop run (delivery, publishes). */
export const GC_SLICE_MS = 4

/**
 * After each stretch a phase rests this many times the CPU time the process used in it, so that it takes
 * at most a quarter of a core: three nodes collecting at once on two cores leave room for delivery. A
 * run has the whole housekeeping interval; it takes seconds. CPU time, not wall time: a stretch that a
 * SIGSTOP or a starved machine made long in wall time used no more CPU (a node stopped for 5 s
 * mid-stretch rested 15 s by its wall time, and its stop waited for the rest).
 */
export const GC_REST_RATIO = 3

/** The longest rest after a stretch, so that a stop never waits long for one. */
export const GC_MAX_REST_MS = 1000

/** How a phase works in stretches; every field has the default above. */
export interface StretchOptions {
  /** true once the node stops: the phase ends at its next pause */
  stopping?: () => boolean
  sliceMs?: number
  restRatio?: number
  /** the process's CPU time in ms (process.cpuUsage by default) */
  cpuMs?: () => number
}

/** @returns the CPU time (ms) this process has used */
const processCpuMs = (): number => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

/** Lets the event loop run (timers, I/O, other tasks) for `ms` (at least once round) before the phase goes on. */
const rest = async (ms: number): Promise<void> =>
  await new Promise((resolve) => {
    if (ms < 1) setImmediate(resolve)
    else setTimeout(resolve, ms)
  })

/**
 * @returns `pause`, to await between two steps of a phase: once the stretch begun at the last pause (or
 * now) has lasted `sliceMs`, it rests `restRatio` times the stretch's CPU time (at most GC_MAX_REST_MS),
 * and resolves to whether the node is stopping (then the phase ends); sooner, it resolves to false at once
 */
export function stretches(options: StretchOptions = {}): () => Promise<boolean> {
  const sliceMs = options.sliceMs ?? GC_SLICE_MS
  const restRatio = options.restRatio ?? GC_REST_RATIO
  const cpuMs = options.cpuMs ?? processCpuMs
  let sliceStart = performance.now()
  let sliceCpu = cpuMs()
  return async (): Promise<boolean> => {
    if (performance.now() - sliceStart < sliceMs) return false
    await rest(Math.min(Math.max(0, cpuMs() - sliceCpu) * restRatio, GC_MAX_REST_MS))
    sliceStart = performance.now()
    sliceCpu = cpuMs()
    return options.stopping?.() === true
  }
}
