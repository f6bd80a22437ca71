/**
 * Soak: three cairn nodes (the compiled binary) on loopback, 200 events per second spread over all
 * three publishers, for SOAK_MINUTES (default 30). Housekeeping prunes with a SOAK_RETENTION retention
 * (default 5m) every SOAK_HOUSEKEEPING (default 1m), so the outbox turns over during the run. Every
 * SOAK_SAMPLE_S seconds (default 60) it records each node's RSS, open file descriptors, outbox files, the
 * p95 latency to the farthest node of the events sent in that window, and the duration of each node's
 * last housekeeping run. At the end every node must hold every event, exactly once.
 *
 *   npm run soak                       # 30 minutes
 *   SOAK_MINUTES=2 SOAK_SAMPLE_S=10 npm run soak
 *   SOAK_MINUTES=5 SOAK_SAMPLE_S=20 SOAK_RETENTION=1m npm run soak   # pruning from minute 1
 *   BIN=/tmp/cairn-before SOAK_MINUTES=5 npm run soak                # another build (bench/nodes.ts)
 *   SOAK_PROF=/tmp/prof npm run soak                                  # CPU profile of the first node
 *   SOAK_MINUTES=10 SOAK_RETENTION=1m npm run soak                    # memory's steady state within minutes
 *
 * Writes the curve to bench/soak-results.md.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Database } from 'bun:sqlite'
import { CairnNode, procStats, ROOT } from './nodes.ts'

const MINUTES = Number(process.env.SOAK_MINUTES ?? 30)
const SAMPLE_S = Number(process.env.SOAK_SAMPLE_S ?? 60)
const RATE = Number(process.env.SOAK_RATE ?? 200)
const PUBLISHERS = Number(process.env.SOAK_PUBLISHERS ?? 3)
/** the nodes' --retention: a shorter one brings the outbox's steady state (and memory's) within minutes */
const RETENTION = process.env.SOAK_RETENTION ?? '5m'
const HOUSEKEEPING = process.env.SOAK_HOUSEKEEPING ?? '1m'

const rssMiB = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024
const fds = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length
const p95 = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? 0 : s[Math.ceil(0.95 * s.length) - 1]
}

const dir = mkdtempSync(join(tmpdir(), 'cairn-soak-'))
const nodes: CairnNode[] = []
try {
  for (let i = 0; i < 3; i++) {
    const n = await CairnNode.create(join(dir, `n${i}`), nodes[0]?.swarmKey)
    // SOAK_PROF=dir: the first node writes a CPU profile there when it stops.
    if (i === 0 && process.env.SOAK_PROF != null) n.env = { BUN_OPTIONS: `--cpu-prof --cpu-prof-dir=${process.env.SOAK_PROF}` }
    n.extraArgs = ['--retention', RETENTION, '--retention-max', '1h', '--housekeeping-interval', HOUSEKEEPING]
    await n.start(i === 0 ? [] : [nodes[0].addrs[0]])
    nodes.push(n)
  }
  const rows: string[] = []
  const header = `| minute | RSS MiB (n0 / n1 / n2) | fds (n0 / n1 / n2) | outbox files (n0 / n1 / n2) | events sent | p95 latency to all three (ms) | last housekeeping ms (n0 / n1 / n2) |`
  console.log(header)
  const sent = new Map<string, number>()
  let windowIds: string[] = []
  const sampling: Array<Promise<void>> = []
  const samples: Array<{ t: number; rss: number[]; fds: number[] }> = []
  const start = performance.now()
  const end = start + MINUTES * 60_000
  let nextSample = start + SAMPLE_S * 1000
  let i = 0
  let failures = 0
  /** requests whose connection broke and that were sent again with their Idempotency-Key */
  let retries = 0
  const failureReasons: string[] = []
  const inflight = new Set<Promise<void>>()
  while (performance.now() < end) {
    const due = start + (i * 1000) / RATE
    const wait = due - performance.now()
    if (wait > 1) await Bun.sleep(wait)
    const id = `s${i}`
    const node = nodes[i % PUBLISHERS]
    sent.set(id, performance.now())
    windowIds.push(id)
    const p = node
      .publishRetrying(id)
      .then((n) => {
        retries += n
      })
      .catch((err: Error) => {
        failures++
        if (failureReasons.length < 5) failureReasons.push(`${id} on n${(i - 1) % PUBLISHERS}: ${err.message}`)
      })
      .finally(() => {
        inflight.delete(p)
      })
    inflight.add(p)
    i++
    if (performance.now() >= nextSample) {
      nextSample += SAMPLE_S * 1000
      const ids = windowIds
      const sampledAt = i
      windowIds = []
      // The window's latency is read a second later, off the publishing loop, so the rate never pauses.
      sampling.push(
        (async () => {
          await new Promise((resolve) => setTimeout(resolve, 1000))
          const lat = ids.map((id) => Math.max(...nodes.map((n) => n.applied.get(id) ?? Infinity)) - sent.get(id)!).filter(Number.isFinite)
          const st = await Promise.all(
            nodes.map(async (n) => (await (await fetch(`http://${n.http}/status`)).json()) as { outbox: { files: number }; housekeeping: { last: { duration_ms: number } | null } })
          )
          const sample = { t: (performance.now() - start) / 60_000, rss: nodes.map((n) => rssMiB(n.proc!.pid)), fds: nodes.map((n) => fds(n.proc!.pid)) }
          samples.push(sample)
          const row = `| ${sample.t.toFixed(1)} | ${sample.rss.map((r) => r.toFixed(0)).join(' / ')} | ${sample.fds.join(' / ')} | ${st.map((s) => s.outbox.files).join(' / ')} | ${sampledAt} | ${p95(lat).toFixed(1)} | ${st.map((s) => s.housekeeping.last?.duration_ms ?? '-').join(' / ')} |`
          rows.push(row)
          console.log(row)
        })()
      )
    }
  }
  await Promise.all(inflight)
  await Promise.all(sampling)
  const deadline = Date.now() + 120_000
  while (Date.now() < deadline && nodes.some((n) => n.applied.size < i)) await Bun.sleep(200)
  const counts = nodes.map((n) => {
    const db = new Database(join(n.dir, 'cairn.db'), { readonly: true })
    const r = db.query('SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM events').get() as { n: number; d: number }
    db.close()
    return r
  })
  const cpu = nodes.map((n) => procStats(n.proc!.pid).cpuSeconds)
  const first = samples[0]
  const last = samples.at(-1)
  const summary = [
    `Soak: 3 nodes, ${RATE} events/s for ${MINUTES} min, retention ${RETENTION}, housekeeping every ${HOUSEKEEPING}; ${i} published, ${failures} publish failures${failureReasons.length > 0 ? ` (${failureReasons.join('; ')})` : ''}, ${retries} requests retried after a broken connection.`,
    `Rows per node: ${counts.map((c) => `${c.n} (${c.d} distinct)`).join(', ')}; every node applied every event: ${nodes.every((n) => n.applied.size === i)}.`,
    first != null && last != null
      ? `RSS from the first to the last sample: ${first.rss.map((r, k) => `${r.toFixed(0)} → ${last.rss[k].toFixed(0)} MiB`).join(', ')}; fds: ${first.fds.map((f, k) => `${f} → ${last.fds[k]}`).join(', ')}.`
      : '',
    `RSS after the first two minutes, median / max per node: ${nodes
      .map((_, k) => {
        const xs = samples
          .filter((x) => x.t >= 2)
          .map((x) => x.rss[k])
          .sort((a, b) => a - b)
        return xs.length === 0 ? '-' : `${xs[Math.floor(xs.length / 2)].toFixed(0)} / ${xs.at(-1)!.toFixed(0)} MiB`
      })
      .join(', ')}.`,
    `CPU per node over the run: ${cpu.map((c) => `${c.toFixed(0)} s`).join(', ')} (${cpu.map((c) => ((1e6 * c) / i).toFixed(0)).join(' / ')} µs per event published on the network).`
  ]
  console.log(summary.join('\n'))
  writeFileSync(join(ROOT, 'bench', 'soak-results.md'), [...summary, '', header, '|---|---|---|---|---|---|---|', ...rows, ''].join('\n'))
} finally {
  for (const n of nodes) await n.stop().catch(() => {})
  // Each node's housekeeping log lines (with their phases' durations), for finding a stall.
  for (const [k, n] of nodes.entries()) for (const l of n.stderr.split('\n').filter((l) => l.includes('housekeeping'))) console.log(`n${k}: ${l}`)
  rmSync(dir, { recursive: true, force: true })
}
process.exit(0)
