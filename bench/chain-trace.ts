/**
 * Where the scale workload's late events wait: ten nodes of the built binary in a chain of bootstraps,
 * all with `CAIRN_TRACE=1`, 100 events at 20/s from the first. For the first few events that reach
 * some node 2 s or more after publishing, prints when each node applied it, verified its hint, and
 * accepted the first head that covers it (ms after the publish request).
 *
 *   bun bench/chain-trace.ts
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CairnNode } from './nodes.ts'
const dir = mkdtempSync(join(tmpdir(), 'cairn-bench-chain-'))
const nodes: CairnNode[] = []
const now = () => performance.timeOrigin + performance.now()
try {
  for (let i = 0; i < 10; i++) {
    const n = await CairnNode.create(join(dir, `n${i}`), nodes[0]?.swarmKey)
    n.env = { CAIRN_TRACE: '1' }
    await n.start(i === 0 ? [] : [nodes[i - 1].addrs[0]])
    nodes.push(n)
  }
  const seen = nodes.map(() => new Map<string, number>())
  nodes.forEach((n, i) => { n.onApplied = (id) => { seen[i].set(id, now()) } })
  for (let i = 0; i < 10; i++) await nodes[0].publish(`w${i}`)
  for (const m of seen) while (m.size < 10) await Bun.sleep(20)
  const sent: number[] = []
  for (let i = 0; i < 100; i++) { sent.push(now()); void nodes[0].publish(`e${i}`); await Bun.sleep(50) }
  for (const m of seen) while ([...m.keys()].filter((k) => k.startsWith('e')).length < 100) await Bun.sleep(20)
  for (const n of nodes) await n.stop()
  await Bun.sleep(300)
  const marks = nodes.map((n) => n.stderr.split('\n').filter((l) => l.startsWith('TRACE ')).map((l) => { const [, st, seq, at] = l.split(' '); return { st, seq: seq === '' ? undefined : Number(seq), at: Number(at) } }))
  let late = 0
  for (let i = 0; i < 100; i++) {
    const seq = 11 + i
    const row = seen.map((m) => Math.round(m.get(`e${i}`)! - sent[i]))
    if (Math.max(...row) < 2000) continue
    late++
    if (late > 6) continue
    console.log(`seq ${seq}: applied per node (ms)`, row.join(' '))
    for (let k = 1; k < 10; k++) {
      const v = marks[k].find((m) => m.st === 'hint.verified' && m.seq === seq)
      const h = marks[k].find((m) => m.st === 'head.accepted' && m.seq != null && m.seq >= seq)
      console.log(`  node ${k}: hint.verified ${v == null ? '-' : Math.round(v.at - sent[i])}  first head.accepted covering it ${h == null ? '-' : `${Math.round(h.at - sent[i])} (seq ${h.seq})`}`)
    }
  }
  console.log('late events', late)
  for (let k = 0; k < 10; k++) console.log('node', k, 'stderr non-trace:', nodes[k].stderr.split('\n').filter((l) => l !== '' && !l.startsWith('TRACE')).slice(0, 3).join(' | ').slice(0, 400))
} finally {
  for (const n of nodes) await n.stop()
  rmSync(dir, { recursive: true, force: true })
}
