/**
 * Where the latency under load goes: two nodes of the built binary with `CAIRN_TRACE=1`, N events
 * published on A one per request at RATE per second (as workload 4 of `npm run bench`), and for each event
 * the time to A's answer, to A's own stream and to B's stream (p50 / p95 / p99), each process's CPU, and
 * how often each traced stage ran on each node: commits and hints on A; hints checked, heads accepted,
 * walks and the walks' block fetches over the network (`walk.fetch_network`, `walk.fetch_bulk`) on B.
 * The marks are lines on stderr, a dozen per event: they cost each node CPU and some latency; `TRACE=0`
 * runs without them (and without the counts), as `npm run bench` does.
 *
 *   bun bench/load.ts                        # N=5000 RATE=1000
 *   BIN=/tmp/cairn-other N=2000 TRACE=0 bun bench/load.ts
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { procStats, publishAtRate, quantile, startCairnChain, traceMarks, type CairnNode } from './nodes.ts'

const N = Number(process.env.N ?? 5000)
const RATE = Number(process.env.RATE ?? 1000)

const dir = mkdtempSync(join(tmpdir(), 'cairn-bench-load-'))
let nodes: CairnNode[] = []
try {
  nodes = await startCairnChain(dir, 2, { command: process.env.BIN != null ? [process.env.BIN] : undefined, env: { CAIRN_TRACE: process.env.TRACE ?? '1' } })
  const [a, b] = nodes
  for (let i = 0; i < 20; i++) await a.publish(`warm${i}`)
  while (b.applied.size < 20) await Bun.sleep(10)
  const answered = new Map<string, number>()
  const cpu = [procStats(a.proc!.pid).cpuSeconds, procStats(b.proc!.pid).cpuSeconds]
  const driver = process.cpuUsage()
  const start = performance.now()
  const sent = await publishAtRate(a, N, RATE, { id: (i) => `e${i}`, answered })
  while ([...sent.keys()].some((id) => !b.applied.has(id))) await Bun.sleep(10)
  const wall = (performance.now() - start) / 1000
  const used = process.cpuUsage(driver)
  const figures = (at: Map<string, number>): string => {
    const xs = [...sent].flatMap(([id, t]) => (at.has(id) ? [at.get(id)! - t] : []))
    return [0.5, 0.95, 0.99].map((q) => quantile(xs, q).toFixed(1)).join(' / ')
  }
  console.log(`${N} events at ${RATE}/s, one per request; ms p50 / p95 / p99`)
  console.log(`  answered by A        ${figures(answered)}`)
  console.log(`  on A's stream        ${figures(a.applied)}`)
  console.log(`  on B's stream        ${figures(b.applied)}`)
  console.log(
    `  CPU in ${wall.toFixed(2)} s: A ${(procStats(a.proc!.pid).cpuSeconds - cpu[0]).toFixed(2)} s, B ${(procStats(b.proc!.pid).cpuSeconds - cpu[1]).toFixed(2)} s, the driver ${((used.user + used.system) / 1e6).toFixed(2)} s`
  )
  // stop() returns once a node's stderr, with its marks, is read whole
  for (const n of nodes) await n.stop()
  if (process.env.TRACE !== '0') {
    for (const [name, n] of [
      ['A', a],
      ['B', b]
    ] as const) {
      const counts = new Map<string, number>()
      for (const m of traceMarks(n.stderr)) counts.set(m.stage, (counts.get(m.stage) ?? 0) + 1)
      console.log(`  stages on ${name}: ${[...counts].map(([s, c]) => `${s} ${c}`).join(', ')}`)
    }
  }
} finally {
  for (const n of nodes) await n.stop()
  rmSync(dir, { recursive: true, force: true })
}
