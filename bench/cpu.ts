/**
 * Where the CPU goes, per process and per thread, for the paths that bound the targets: publishing
 * one event per request, a receiver catching up, and nodes idle and at a steady low rate. Uses the
 * built binary (`npm run build` first).
 *
 *   bun bench/cpu.ts publish            # N=10000 publishes, 100 in flight, to one node: CPU per event
 *   bun bench/cpu.ts catchup            # N=20000 published while B is down; CPU of A and B while B catches up, peak RSS of both
 *   bun bench/cpu.ts replicate          # N=10000 published while B is up: rate until B has them, CPU and peak RSS of A and B
 *   bun bench/cpu.ts steady             # NODES=10 in a chain: CPU of each idle (three windows of 10 s), then per event while N=200 go at RATE=20/s
 *   BIN=/tmp/cairn-before bun bench/cpu.ts publish   # another build of cairn (copy dist/cairn away first), to compare
 *   BATCH=100 bun bench/cpu.ts catchup  # publish in batches of 100 (4 requests in flight) instead of one event per request
 *   STREAM=1 bun bench/cpu.ts publish   # publish over one streaming request (POST /v1/events/stream) instead
 *   IN_FLIGHT=16 BATCH=100 bun bench/cpu.ts publish   # requests in flight at once (default 100, or 4 with BATCH)
 *   BUN_OPTIONS="--cpu-prof-md --cpu-prof-dir=/tmp/prof" bun bench/cpu.ts catchup   # and a profile of each process
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { procStats, startCairnChain, type CairnNode } from './nodes.ts'

const mode = process.argv[2]
const N = Number(process.env.N ?? (mode === 'catchup' ? 20_000 : mode === 'steady' ? 200 : 10_000))
if (mode !== 'publish' && mode !== 'catchup' && mode !== 'replicate' && mode !== 'steady') {
  console.error('usage: bun bench/cpu.ts publish|catchup|replicate|steady   (N=count)')
  process.exit(2)
}

/** CPU seconds of each thread of `pid`, by thread name (numbers in names folded; the main thread is "main") */
function threadSeconds(pid: number): Map<string, number> {
  const byName = new Map<string, number>()
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    let stat: string
    try {
      stat = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8')
    } catch {
      continue
    }
    const name = t === String(pid) ? 'main' : stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')).replace(/\d+/g, '#')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    byName.set(name, (byName.get(name) ?? 0) + (Number(f[11]) + Number(f[12])) / 100)
  }
  return byName
}

/** CPU seconds of each thread of `pid`, by thread name, largest first */
function threads(pid: number): string {
  return [...threadSeconds(pid)]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 6)
    .map(([n, s]) => `${n} ${s.toFixed(2)} s`)
    .join(', ')
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

/** Events per publish request: 1 (100 requests in flight), or BATCH (4 in flight) */
const BATCH = Number(process.env.BATCH ?? 1)
/** Requests in flight at once (IN_FLIGHT=16 BATCH=100: more events a commit can take) */
const IN_FLIGHT = Number(process.env.IN_FLIGHT ?? (BATCH <= 1 ? 100 : 4))
/** STREAM=1: every event over one streaming publish, acknowledged per line */
const STREAM = process.env.STREAM === '1'

async function publishAll(node: CairnNode, prefix: string): Promise<number> {
  let next = 0
  const t0 = performance.now()
  if (STREAM) {
    await node.publishStream(Array.from({ length: N }, (_, i) => `${prefix}${i}`))
    return (performance.now() - t0) / 1000
  }
  const one = async (): Promise<void> => {
    if (BATCH <= 1) {
      await node.publish(`${prefix}${next++}`)
      return
    }
    await node.publishBatch(Array.from({ length: Math.min(BATCH, N - next) }, () => `${prefix}${next++}`))
  }
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < N) await one()
    })
  )
  return (performance.now() - t0) / 1000
}

const dir = mkdtempSync(join(tmpdir(), 'cairn-bench-cpu-'))
let nodes: CairnNode[] = []
try {
  nodes = await startCairnChain(dir, mode === 'publish' ? 1 : mode === 'steady' ? Number(process.env.NODES ?? 10) : 2, { command: process.env.BIN != null ? [process.env.BIN] : undefined })
  const [a, b] = nodes
  if (mode === 'steady') {
    await steady(nodes)
  } else if (mode === 'publish') {
    await a.publish('warm')
    const cpu = procStats(a.proc!.pid).cpuSeconds
    const s = await publishAll(a, 'p')
    const used = procStats(a.proc!.pid).cpuSeconds - cpu
    console.log(
      `published ${N} ${STREAM ? 'over one stream' : BATCH <= 1 ? `one per request (${IN_FLIGHT} in flight)` : `in batches of ${BATCH} (${IN_FLIGHT} in flight)`}: ${Math.round(N / s)} events/s, ${Math.round((used / N) * 1e6)} µs of CPU per event on the node`
    )
    console.log(`node threads since start: ${threads(a.proc!.pid)}`)
  } else {
    await a.publish('warm')
    while (!b.applied.has('warm')) await Bun.sleep(10)
    if (mode === 'replicate') {
      const cpuA = procStats(a.proc!.pid).cpuSeconds
      const cpuB = procStats(b.proc!.pid).cpuSeconds
      // the bench's own CPU (its HTTP client and the stream it reads): it shares the two cores with A and B
      const cpuClient = process.cpuUsage()
      const t0 = performance.now()
      const s = await publishAll(a, 'r')
      while (b.applied.size < N + 1) await Bun.sleep(5)
      const wall = (performance.now() - t0) / 1000
      const client = process.cpuUsage(cpuClient)
      console.log(
        `published ${N} in ${s.toFixed(2)} s (${Math.round(N / s)}/s); B had them all after ${wall.toFixed(2)} s (${Math.round(N / wall)}/s); CPU meanwhile: A ${(procStats(a.proc!.pid).cpuSeconds - cpuA).toFixed(2)} s, B ${(procStats(b.proc!.pid).cpuSeconds - cpuB).toFixed(2)} s, the bench's client ${((client.user + client.system) / 1e6).toFixed(2)} s`
      )
      console.log(`A threads since start: ${threads(a.proc!.pid)}`)
      console.log(`B threads since start: ${threads(b.proc!.pid)}`)
      console.log(`peak RSS: A ${Math.round(procStats(a.proc!.pid).peakRssMiB)} MiB, B ${Math.round(procStats(b.proc!.pid).peakRssMiB)} MiB`)
    } else {
      await catchUp(a, b)
    }
  }
} finally {
  for (const n of nodes) await n.stop()
  rmSync(dir, { recursive: true, force: true })
}

/** B stops, A publishes N, B restarts: how long until B has them, and the CPU of both meanwhile. */
async function catchUp(a: CairnNode, b: CairnNode): Promise<void> {
  await b.stop()
  const s = await publishAll(a, 'c')
  console.log(`published ${N} while B was down in ${s.toFixed(1)} s`)
  const t0 = performance.now()
  await b.start([a.addrs[0]])
  const cpuA = procStats(a.proc!.pid).cpuSeconds
  const cpuB = procStats(b.proc!.pid).cpuSeconds
  while (b.applied.size < N + 1) await Bun.sleep(10)
  const wall = (performance.now() - t0) / 1000
  console.log(
    `B caught up in ${wall.toFixed(2)} s from its start (${Math.round(N / wall)} events/s); CPU meanwhile: A ${(procStats(a.proc!.pid).cpuSeconds - cpuA).toFixed(2)} s, B ${(procStats(b.proc!.pid).cpuSeconds - cpuB).toFixed(2)} s`
  )
  console.log(`B threads since start: ${threads(b.proc!.pid)}`)
  console.log(`peak RSS: A ${Math.round(procStats(a.proc!.pid).peakRssMiB)} MiB, B ${Math.round(procStats(b.proc!.pid).peakRssMiB)} MiB`)
}

/** Every node's CPU while idle, then per event while N events go from the first node at RATE per second. */
async function steady(nodes: CairnNode[]): Promise<void> {
  const rate = Number(process.env.RATE ?? 20)
  const idleS = 10
  const cpu = (): number[] => nodes.map((n) => procStats(n.proc!.pid).cpuSeconds)
  const main = (): number[] => nodes.map((n) => threadSeconds(n.proc!.pid).get('main') ?? 0)
  // the mesh and the first head exchanges settle first
  await nodes[0].publish('warm')
  for (const n of nodes) while (!n.applied.has('warm')) await Bun.sleep(20)
  let c0 = cpu()
  let idle: number[] = []
  for (let w = 0; w < 3; w++) {
    await Bun.sleep(idleS * 1000)
    const c1 = cpu()
    idle = c1.map((c, i) => (c - c0[i]) / idleS)
    c0 = c1
    console.log(`idle ${w * idleS}-${(w + 1) * idleS} s after the first event, % of a core per node: ${idle.map((x) => (x * 100).toFixed(1)).join(' ')} (median ${(median(idle) * 100).toFixed(1)})`)
  }
  c0 = cpu()
  const m0 = main()
  const t0 = performance.now()
  for (let i = 0; i < N; i++) {
    void nodes[0].publish(`s${i}`)
    await Bun.sleep(Math.max(0, t0 + ((i + 1) * 1000) / rate - performance.now()))
  }
  for (const n of nodes) while (n.applied.size < N + 1) await Bun.sleep(20)
  const wall = (performance.now() - t0) / 1000
  const perEvent = cpu().map((c, i) => ((c - c0[i] - idle[i] * wall) / N) * 1000)
  const mainPerEvent = main().map((c, i) => ((c - m0[i]) / N) * 1000)
  console.log(
    `${N} events at ${rate}/s, all nodes had them after ${wall.toFixed(1)} s; % of a core per node meanwhile: ${cpu()
      .map((c, i) => (((c - c0[i]) / wall) * 100).toFixed(1))
      .join(' ')}`
  )
  console.log(
    `ms of CPU per event beyond idle, per node: ${perEvent.map((x) => x.toFixed(2)).join(' ')} (median ${median(perEvent).toFixed(2)}); of it on the main thread (idle included): median ${median(mainPerEvent).toFixed(2)}`
  )
}
