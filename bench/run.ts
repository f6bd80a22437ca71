/**
 * cairn side by side with OrbitDB 4, on 127.0.0.1, two processes per system, 100-byte payloads.
 *
 *   npm run bench                        # every workload, both systems
 *   BENCH_ONLY=latency,catchup npm run bench
 *   BENCH_SYSTEMS=cairn npm run bench    # skip OrbitDB
 *   BIN=/tmp/cairn-other bun bench/run.ts   # another build of cairn (copy dist/cairn away first), to compare
 *
 * OrbitDB is installed into bench/node_modules on first use (bench/package.json), never into cairn's own.
 * Prints one table per workload (cairn, OrbitDB, ratio); a whole run of dist/cairn also writes them to bench/results.md.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir, cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import { createNode, procStats, publishAtRate, quantile, ROOT, type BenchNode, type SystemName } from './nodes.ts'

const ONLY = process.env.BENCH_ONLY?.split(',').map((s) => s.trim())
const SYSTEMS = (process.env.BENCH_SYSTEMS?.split(',') ?? ['cairn', 'orbitdb']) as SystemName[]
const TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_MS ?? 180_000)

type Figure = number | string
interface Row {
  figure: string
  unit: string
  better: 'lower' | 'higher'
  values: Partial<Record<SystemName, Figure>>
}
const tables: Array<{ title: string; rows: Row[] }> = []

if (SYSTEMS.includes('orbitdb') && !existsSync(join(ROOT, 'bench/node_modules/@orbitdb/core'))) {
  console.error('# installing OrbitDB into bench/node_modules (bench/package.json)')
  const r = Bun.spawnSync(['npm', 'install', '--no-audit', '--no-fund'], { cwd: join(ROOT, 'bench'), stdout: 'inherit', stderr: 'inherit' })
  if (r.exitCode !== 0) throw new Error('npm install in bench/ failed')
}

// ---------------------------------------------------------------- helpers

const round = (x: number, digits = 1): number => Number(x.toFixed(digits))
const sleep = async (ms: number): Promise<void> => {
  await Bun.sleep(ms)
}
let seq = 0
const newId = (): string => `e${process.pid}-${++seq}`

/** Runs `fn` against a fresh set of nodes and always tears them down. */
/**
 * How nodes find each other: 'star' all bootstrap to the first, 'chain' each to the one before it,
 * 'mesh' each to the (up to) three before it, so that gossip has several paths to every node.
 */
type Topology = 'star' | 'chain' | 'mesh'

async function withNodes<T>(system: SystemName, count: number, fn: (nodes: BenchNode[]) => Promise<T>, topology: Topology = 'star'): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), `cairn-bench-${system}-`))
  const nodes: BenchNode[] = []
  try {
    for (let i = 0; i < count; i++) {
      const node = await createNode(system, dir, `n${i}`, nodes[0])
      const peers = topology === 'chain' ? nodes.slice(-1) : topology === 'mesh' ? nodes.slice(-3) : nodes.slice(0, 1)
      await node.start(peers.map((p) => p.addrs[0]))
      nodes.push(node)
    }
    return await fn(nodes)
  } finally {
    for (const n of nodes) await n.stop().catch(() => {})
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Resolves when every id in `ids` is applied on `node`, or throws with how far it got. */
async function allApplied(node: BenchNode, ids: string[], timeoutMs = TIMEOUT_MS): Promise<number> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    let missing = 0
    let last = 0
    for (const id of ids) {
      const at = node.applied.get(id)
      if (at == null) missing++
      else if (at > last) last = at
    }
    if (missing === 0) return last
    if (performance.now() > deadline) throw new Error(`timed out: ${ids.length - missing} of ${ids.length} applied after ${timeoutMs / 1000} s`)
    await sleep(5)
  }
}

/** Publishes `ids` on `node` with at most `concurrency` in flight; @returns when the last was acknowledged */
async function publishAll(node: BenchNode, ids: string[], concurrency: number): Promise<number> {
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(concurrency, ids.length) }, async () => {
      while (next < ids.length) await node.publish(ids[next++])
    })
  )
  return performance.now()
}

function latencies(sent: Map<string, number>, at: BenchNode[]): number[] {
  return [...sent].map(([id, t0]) => Math.max(...at.map((n) => n.applied.get(id)!)) - t0)
}

/** Collects rows for one workload across systems: `measure` returns figure → value for one system. */
async function workload(key: string, title: string, measure: (system: SystemName) => Promise<Array<[string, string, 'lower' | 'higher', Figure]>>): Promise<void> {
  if (ONLY != null && !ONLY.includes(key)) return
  const rows = new Map<string, Row>()
  for (const system of SYSTEMS) {
    console.error(`# ${title}: ${system}`)
    let figures: Array<[string, string, 'lower' | 'higher', Figure]>
    try {
      figures = await measure(system)
    } catch (err) {
      console.error(`  ${system} failed: ${(err as Error).message}`)
      figures = [['result', '', 'lower', `failed: ${(err as Error).message}`]]
    }
    for (const [figure, unit, better, value] of figures) {
      const row = rows.get(figure) ?? { figure, unit, better, values: {} }
      row.values[system] = value
      rows.set(figure, row)
      console.error(`  ${figure}: ${value} ${unit}`)
    }
  }
  tables.push({ title, rows: [...rows.values()] })
}

const memoryFigures = (nodes: BenchNode[], names = ['A', 'B']): Array<[string, string, 'lower', Figure]> =>
  nodes.map((n, i) => {
    n.stats()
    return [`peak RSS ${names[i] ?? `node ${i}`}`, 'MiB', 'lower', round(n.peakRssMiB, 0)]
  })

const latencyFigures = (label: string, ms: number[]): Array<[string, string, 'lower', Figure]> => [
  [`${label} p50`, 'ms', 'lower', round(quantile(ms, 0.5))],
  [`${label} p95`, 'ms', 'lower', round(quantile(ms, 0.95))],
  [`${label} p99`, 'ms', 'lower', round(quantile(ms, 0.99))],
  [`${label} max`, 'ms', 'lower', round(Math.max(...ms))]
]

// ---------------------------------------------------------------- workloads

/** Warms the path (connections, JIT) with `n` events from `from` until every node in `to` has them. */
async function warmUp(from: BenchNode, to: BenchNode[], n = 20): Promise<void> {
  const ids = Array.from({ length: n }, newId)
  await publishAll(from, ids, 1)
  for (const node of to) await allApplied(node, ids)
}

/** CPU seconds of each node so far. */
const cpuOf = (nodes: BenchNode[]): number[] => nodes.map((n) => procStats(n.proc!.pid).cpuSeconds)

/** Idle CPU of each node in % of a core, over `ms` in which nothing is published. */
async function idleCpu(nodes: BenchNode[], ms: number): Promise<number[]> {
  const c0 = cpuOf(nodes)
  const t0 = performance.now()
  await sleep(ms)
  const wall = (performance.now() - t0) / 1000
  return cpuOf(nodes).map((c, i) => ((c - c0[i]) / wall) * 100)
}

/**
 * Latency from publish on A to applied on B of `count` events sent at `perSecond`; with `cpu`, also each
 * node's idle CPU (over the 10 s after the warm-up, and settled, 20-30 s after it) and its CPU per event
 * with the smaller of the two idle shares subtracted (the figure errs high, not low).
 */
const latencyAt =
  (count: number, perSecond: number, label: string, cpu = false) =>
  async (system: SystemName) =>
    await withNodes(system, 2, async ([a, b]) => {
      await warmUp(a, [b])
      const idle = cpu ? await idleCpu([a, b], 10_000) : []
      // Settled: what a quiet node costs once the warm-up's re-announces and housekeeping are done.
      if (cpu) await sleep(10_000)
      const settled = cpu ? await idleCpu([a, b], 10_000) : []
      const c0 = cpuOf([a, b])
      const t0 = performance.now()
      const sent = await publishAtRate(a, count, perSecond, { id: newId })
      await allApplied(b, [...sent.keys()])
      const wall = (performance.now() - t0) / 1000
      const perEvent = cpu ? cpuOf([a, b]).map((c, i) => ((c - c0[i] - (Math.min(idle[i], settled[i]) / 100) * wall) / count) * 1000) : []
      const cpuFigures: Array<[string, string, 'lower', Figure]> = cpu
        ? [
            ['CPU per event, publisher A (idle subtracted)', 'ms', 'lower', round(perEvent[0], 2)],
            ['CPU per event, receiver B (idle subtracted)', 'ms', 'lower', round(perEvent[1], 2)],
            ['idle CPU A / B, 0-10 s after the warm-up', '% of a core', 'lower', `${round(idle[0], 2)} / ${round(idle[1], 2)}`],
            ['idle CPU A / B, settled (20-30 s after)', '% of a core', 'lower', `${round(settled[0], 2)} / ${round(settled[1], 2)}`]
          ]
        : []
      return [...latencyFigures(label, latencies(sent, [b])), ...cpuFigures, ...memoryFigures([a, b])]
    })

await workload('latency', '1. Latency: 200 events at 20/s, publish on A → applied on B', latencyAt(200, 20, 'latency', true))

await workload(
  'throughput',
  '2. Throughput: 5,000 events back to back (100 in flight), then 5,000 in batches, then 5,000 over one stream',
  async (system) =>
    await withNodes(system, 2, async ([a, b]) => {
      const ids = Array.from({ length: 5000 }, newId)
      const t0 = performance.now()
      const acked = await publishAll(a, ids, 100)
      const replicated = await allApplied(b, ids)
      const figures: Array<[string, string, 'lower' | 'higher', Figure]> = [
        ['publish rate on A', 'events/s', 'higher', Math.round(ids.length / ((acked - t0) / 1000))],
        ['replication rate (until B has all)', 'events/s', 'higher', Math.round(ids.length / ((replicated - t0) / 1000))]
      ]
      // The same again in batch requests (an array body: one commit each), where the system has them.
      if (a.publishBatch != null) {
        const more = Array.from({ length: 5000 }, newId)
        const batches = Array.from({ length: more.length / 100 }, (_, i) => more.slice(i * 100, i * 100 + 100))
        let next = 0
        const t1 = performance.now()
        await Promise.all(
          [0, 1, 2, 3].map(async () => {
            while (next < batches.length) await a.publishBatch!(batches[next++])
          })
        )
        const acked1 = performance.now()
        const replicated1 = await allApplied(b, more)
        figures.push(
          ['publish rate on A, batches of 100 (4 in flight)', 'events/s', 'higher', Math.round(more.length / ((acked1 - t1) / 1000))],
          ['replication rate, batches of 100', 'events/s', 'higher', Math.round(more.length / ((replicated1 - t1) / 1000))]
        )
      }
      // And over one streaming publish (NDJSON, acknowledged per event once durable), where the system has one.
      if (a.publishStream != null) {
        const streamed = Array.from({ length: 5000 }, newId)
        const t2 = performance.now()
        await a.publishStream(streamed)
        const acked2 = performance.now()
        const replicated2 = await allApplied(b, streamed)
        figures.push(
          ['publish rate on A, one stream (NDJSON, acked per event)', 'events/s', 'higher', Math.round(streamed.length / ((acked2 - t2) / 1000))],
          ['replication rate, one stream', 'events/s', 'higher', Math.round(streamed.length / ((replicated2 - t2) / 1000))]
        )
      }
      return [...figures, ...memoryFigures([a, b])]
    })
)

async function catchUp(system: SystemName, n: number): Promise<Array<[string, string, 'lower' | 'higher', Figure]>> {
  return await withNodes(system, 2, async ([a, b]) => {
    await warmUp(a, [b], 10)
    await b.stop()
    const ids = Array.from({ length: n }, newId)
    await publishAll(a, ids, 100)
    const t0 = performance.now()
    await b.start([a.addrs[0]])
    const started = performance.now()
    const done = await allApplied(b, ids, Math.max(TIMEOUT_MS, n))
    const label = n.toLocaleString('en')
    return [
      [`catch-up ${label}: time from restart`, 's', 'lower', round((done - t0) / 1000, 2)],
      [`catch-up ${label}: rate from restart`, 'events/s', 'higher', Math.round(n / ((done - t0) / 1000))],
      [`catch-up ${label}: rate once listening`, 'events/s', 'higher', Math.round(n / ((done - started) / 1000))],
      ...memoryFigures([a, b]).map(([f, u, bt, v]) => [`${f} (${label})`, u, bt, v] as [string, string, 'lower', Figure])
    ]
  })
}

await workload('catchup', '3. Catch-up: B stops, A publishes, B restarts', async (system) => {
  const figures = await catchUp(system, 5000)
  if (system === 'cairn') figures.push(...(await catchUp(system, 100_000)))
  return figures
})

await workload('load', '4. Latency under load: 5,000 events at 1,000/s', latencyAt(5000, 1000, 'latency at 1,000/s'))

/** Ten nodes in `topology`, one publishing `count` events at `rate` per second: latency to the farthest, CPU, gossip copies. */
const spread =
  (topology: Topology, count = 100, rate = 20) =>
  async (system: SystemName): Promise<Array<[string, string, 'lower' | 'higher', Figure]>> =>
    await withNodes(
      system,
      10,
      async (nodes) => {
        await warmUp(nodes[0], nodes, 10)
        const cpu0 = nodes.map((n) => procStats(n.proc!.pid).cpuSeconds)
        const hints0 = await Promise.all(nodes.map(async (n) => await n.gossipHints?.()))
        const t0 = performance.now()
        const sent = await publishAtRate(nodes[0], count, rate, { id: newId })
        for (const n of nodes) await allApplied(n, [...sent.keys()])
        const wall = (performance.now() - t0) / 1000
        // Copies of each hint a node received by gossip: every copy over the distinct ones.
        const copies: number[] = []
        for (const [i, n] of nodes.entries()) {
          const h = await n.gossipHints?.()
          const h0 = hints0[i]
          if (h == null || h0 == null || i === 0) continue
          const received = h.received - h0.received
          const distinct = received - (h.duplicates - h0.duplicates)
          if (distinct > 0) copies.push(received / distinct)
        }
        const cpu = nodes.map((n, i) => ((procStats(n.proc!.pid).cpuSeconds - cpu0[i]) / wall) * 100)
        const rss = nodes.map((n) => {
          n.stats()
          return n.peakRssMiB
        })
        return [
          ...latencyFigures('to the farthest node', latencies(sent, nodes)),
          ['CPU of the publisher', '% of a core', 'lower', round(cpu[0])],
          ['CPU per other node (median)', '% of a core', 'lower', round(quantile(cpu.slice(1), 0.5))],
          ...(copies.length > 0
            ? ([
                ['gossip copies per hint received, median of the other nodes', 'copies', 'lower', round(quantile(copies, 0.5), 2)],
                ['gossip copies per hint received, the most of any node', 'copies', 'lower', round(Math.max(...copies), 2)]
              ] as Array<[string, string, 'lower', Figure]>)
            : []),
          ['peak RSS per node (max)', 'MiB', 'lower', round(Math.max(...rss), 0)]
        ]
      },
      topology
    )

await workload('scale', '5. Scale: 10 nodes in a chain of bootstraps, one publishing 100 events at 20/s', spread('chain'))

// The rate issue 24's target names: the farthest of ten busy nodes within 100 ms at p95.
await workload('scale100', '5b. Scale: 10 nodes in a chain of bootstraps, one publishing 500 events at 100/s', spread('chain', 500, 100))

await workload(
  'dirsize',
  '6. Cost versus directory size: one new event when the outbox holds N',
  async (system) =>
    await withNodes(system, 2, async ([a, b]) => {
      const figures: Array<[string, string, 'lower' | 'higher', Figure]> = []
      let have = 0
      for (const n of [1000, 10_000, 100_000]) {
        const label = n.toLocaleString('en')
        if (system === 'orbitdb' && n > 10_000) {
          figures.push([`sync one new event at ${label} (median of 5)`, 'ms', 'lower', 'not run (filling takes too long)'])
          continue
        }
        const fill = Array.from({ length: n - have }, newId)
        await publishAll(a, fill, 100)
        await allApplied(b, fill, Math.max(TIMEOUT_MS, n * 5))
        have = n
        await sleep(500)
        const ms: number[] = []
        for (let i = 0; i < 5; i++) {
          const id = newId()
          const t0 = performance.now()
          await a.publish(id)
          ms.push((await allApplied(b, [id])) - t0)
          have++
          await sleep(100)
        }
        figures.push([`sync one new event at ${label} (median of 5)`, 'ms', 'lower', round(quantile(ms, 0.5))])
      }
      return [...figures, ...memoryFigures([a, b])]
    })
)

await workload('mesh', '7. Mesh: 10 nodes, each bootstrapped to the three before it, one publishing 100 events at 20/s', spread('mesh'))

// ---------------------------------------------------------------- report

const fmt = (v: Figure | undefined): string => (v == null ? '–' : typeof v === 'number' ? v.toLocaleString('en') : v)
function ratio(r: Row): string {
  const c = r.values.cairn
  const o = r.values.orbitdb
  if (typeof c !== 'number' || typeof o !== 'number' || c === 0 || o === 0) return '–'
  const x = r.better === 'lower' ? o / c : c / o
  return x >= 1 ? `cairn ${round(x, x >= 10 ? 0 : 1)}× better` : `OrbitDB ${round(1 / x, 1)}× better`
}

const version = Bun.spawnSync([join(ROOT, 'dist', 'cairn'), '--version'])
  .stdout.toString()
  .trim()
const orbitVersion = existsSync(join(ROOT, 'bench/node_modules/@orbitdb/core/package.json'))
  ? (await Bun.file(join(ROOT, 'bench/node_modules/@orbitdb/core/package.json')).json()).version
  : 'not installed'
const lines = [
  `Run ${new Date().toISOString()} on ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${round(totalmem() / 2 ** 30, 0)} GiB; ${version}; @orbitdb/core ${orbitVersion}; Bun ${Bun.version}.`,
  ''
]
for (const t of tables) {
  lines.push(`### ${t.title}`, '', '| figure | cairn | OrbitDB | ratio |', '|---|---:|---:|---|')
  for (const r of t.rows) lines.push(`| ${r.figure}${r.unit !== '' ? ` (${r.unit})` : ''} | ${fmt(r.values.cairn)} | ${fmt(r.values.orbitdb)} | ${ratio(r)} |`)
  lines.push('')
}
const report = lines.join('\n')
console.log(report)
// bench/results.md holds the tables of a whole run (BENCHMARKS.md's "Latest results"): a run of some workloads or
// one system, or of another build, would replace them with a part.
if (ONLY == null && SYSTEMS.includes('cairn') && SYSTEMS.includes('orbitdb') && process.env.BIN == null) writeFileSync(join(ROOT, 'bench', 'results.md'), report)
else console.error('# bench/results.md left as it is: it holds a whole run of dist/cairn (no BENCH_ONLY, BENCH_SYSTEMS or BIN)')
process.exit(0)
