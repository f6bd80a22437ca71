/**
 * Several busy producers heard through one peer: a hub, PRODUCERS nodes and one receiver, every node
 * bootstrapped to the hub only (a star, as when every node of a network names one bootstrap address), so
 * the receiver gets every producer's hints from the hub. Each producer publishes N events one at a time at
 * RATE per second, all at once; the receiver's latency (publish sent → the event on its stream), p50 / p95 /
 * p99, and how many heads its limit held back (`cairn_heads_received_total{result="coalesced"}`: the
 * blocks such a hint carried are then fetched over the network).
 *
 *   bun bench/star.ts                                       # PRODUCERS=3 N=400 RATE=20
 *   CAIRN_HEADS_PER_SECOND=40 BIN=/tmp/cairn-other bun bench/star.ts   # every node's limit (default 200)
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CairnNode, procStats, publishAtRate, quantile } from './nodes.ts'

const PRODUCERS = Number(process.env.PRODUCERS ?? 3)
const N = Number(process.env.N ?? 400)
const RATE = Number(process.env.RATE ?? 20)

const dir = mkdtempSync(join(tmpdir(), 'cairn-bench-star-'))
const nodes: CairnNode[] = []
try {
  const start = async (name: string, bootstrap: string[]): Promise<CairnNode> => {
    const node = await CairnNode.create(join(dir, name), nodes[0]?.swarmKey)
    if (process.env.BIN != null) node.command = [process.env.BIN]
    nodes.push(node)
    await node.start(bootstrap)
    return node
  }
  const hub = await start('hub', [])
  const producers: CairnNode[] = []
  for (let i = 0; i < PRODUCERS; i++) producers.push(await start(`p${i}`, [hub.addrs[0]]))
  const receiver = await start('receiver', [hub.addrs[0]])
  for (const [i, p] of producers.entries()) await p.publish(`warm${i}`)
  while (receiver.applied.size < PRODUCERS) await Bun.sleep(10)

  const coalesced = async (): Promise<number> => {
    const text = await (await fetch(`http://${receiver.http}/metrics`)).text()
    return Number(/^cairn_heads_received_total\{result="coalesced"\} (\S+)$/m.exec(text)?.[1] ?? 0)
  }
  const before = await coalesced()
  const cpu = nodes.map((n) => procStats(n.proc!.pid).cpuSeconds)
  const sent = new Map<string, number>()
  await Promise.all(
    producers.map(async (p, i) => {
      for (const [id, t] of await publishAtRate(p, N, RATE, { id: (k) => `p${i}e${k}` })) sent.set(id, t)
    })
  )
  while ([...sent.keys()].some((id) => !receiver.applied.has(id))) await Bun.sleep(10)
  const latencies = [...sent].map(([id, t]) => receiver.applied.get(id)! - t)
  const used = nodes.map((n, i) => (procStats(n.proc!.pid).cpuSeconds - cpu[i]).toFixed(1))
  console.log(`${PRODUCERS} producers × ${N} events at ${RATE}/s each, heard by the receiver through the hub`)
  console.log(`receiver latency ms p50 / p95 / p99: ${[0.5, 0.95, 0.99].map((q) => quantile(latencies, q).toFixed(1)).join(' / ')}`)
  console.log(`heads the receiver's limit held back (coalesced): ${(await coalesced()) - before}`)
  console.log(`CPU seconds meanwhile, hub / producers / receiver: ${used[0]} / ${used.slice(1, -1).join(' ')} / ${used.at(-1)}`)
} finally {
  for (const n of nodes.reverse()) await n.stop()
  rmSync(dir, { recursive: true, force: true })
}
