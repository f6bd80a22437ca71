/**
 * Where the scale workload's late events wait: ten nodes of the built binary in a chain of bootstraps,
 * all with `CAIRN_TRACE=1`, EVENTS=100 events at RATE=20/s from the first. Prints each node's median and
 * p95 latency, and for the first few events that reach some node LATE_MS=2000 ms or more after
 * publishing, when each node applied it, verified its hint, and accepted the first head that covers
 * it (ms after the publish request).
 *
 *   bun bench/chain-trace.ts
 *   EVENTS=500 RATE=100 LATE_MS=200 bun bench/chain-trace.ts
 *   DUMP=/tmp/chain bun bench/chain-trace.ts   # also writes node-<k>.log (its stderr) and sent.txt there
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { epochNow, startCairnChain, traceMarks, type CairnNode } from './nodes.ts'

const COUNT = 10
const WARM = 10
const EVENTS = Number(process.env.EVENTS ?? 100)
const RATE = Number(process.env.RATE ?? 20)
const LATE_MS = Number(process.env.LATE_MS ?? 2000)
const SHOWN = 6

const dir = mkdtempSync(join(tmpdir(), 'cairn-bench-chain-'))
let nodes: CairnNode[] = []
try {
  nodes = await startCairnChain(dir, COUNT, { env: { CAIRN_TRACE: '1' } })
  for (let i = 0; i < WARM; i++) await nodes[0].publish(`w${i}`)
  for (const n of nodes) while (n.applied.size < WARM) await Bun.sleep(20)
  const seen = nodes.map(() => new Map<string, number>())
  nodes.forEach((n, k) => {
    n.onApplied = (id) => {
      seen[k].set(id, epochNow())
    }
  })
  const sent: number[] = []
  const start = epochNow()
  for (let i = 0; i < EVENTS; i++) {
    const wait = start + (i * 1000) / RATE - epochNow()
    if (wait > 1) await Bun.sleep(wait)
    sent.push(epochNow())
    void nodes[0].publish(`e${i}`)
  }
  for (const m of seen) while (m.size < EVENTS) await Bun.sleep(20)
  // stop() returns once a node's stderr, with its marks, is read whole
  for (const n of nodes) await n.stop()

  const marks = nodes.map((n) => traceMarks(n.stderr))
  const dump = process.env.DUMP
  if (dump != null) {
    // every node's stderr, and when each event was sent, for a closer look at one run
    for (const [k, n] of nodes.entries()) await Bun.write(join(dump, `node-${k}.log`), n.stderr)
    await Bun.write(join(dump, 'sent.txt'), sent.map((t, i) => `${WARM + 1 + i} ${t.toFixed(3)}`).join('\n') + '\n')
  }
  const quantile = (xs: number[], q: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]
  for (const [k, m] of seen.entries()) {
    const ms = sent.map((t, i) => m.get(`e${i}`)! - t)
    console.log(`node ${k}: p50 ${quantile(ms, 0.5).toFixed(1)} ms, p95 ${quantile(ms, 0.95).toFixed(1)} ms`)
  }
  let late = 0
  for (let i = 0; i < EVENTS; i++) {
    const seq = WARM + 1 + i
    const applied = seen.map((m) => Math.round(m.get(`e${i}`)! - sent[i]))
    if (Math.max(...applied) < LATE_MS) continue
    if (++late > SHOWN) continue
    console.log(`seq ${seq}: applied per node (ms) ${applied.join(' ')}`)
    for (let k = 1; k < COUNT; k++) {
      const hint = marks[k].find((m) => m.stage === 'hint.verified' && m.seq === seq)
      const head = marks[k].find((m) => m.stage === 'head.accepted' && m.seq != null && m.seq >= seq)
      console.log(
        `  node ${k}: hint verified ${hint == null ? '-' : Math.round(hint.at - sent[i])}, first head covering it accepted ${head == null ? '-' : `${Math.round(head.at - sent[i])} (seq ${head.seq})`}`
      )
    }
  }
  console.log(`${late} of ${EVENTS} events reached some node ${LATE_MS} ms or more after publishing`)
} finally {
  for (const n of nodes) await n.stop()
  rmSync(dir, { recursive: true, force: true })
}
