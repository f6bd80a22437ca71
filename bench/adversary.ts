/**
 * Honest traffic under attack: A publishes 200 events at 20/s to B (two `dist/cairn` processes), first in a
 * quiet network, then while a hostile member M (in this process, with the swarm key and identities of its
 * own) runs the seq bomb, the directory bomb and the hint flood of issue 19 together. Prints B's latency in
 * both phases and their ratio, how much A's and B's blocks.db grew during the attack, and how many honest
 * events were lost or delivered twice.
 *
 *   bun bench/adversary.ts               # N=200 events per phase at RATE=20/s, FLOOD=200 hints of 190 KiB
 */
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { initDataDir } from '../src/datadir/init.ts'
import { loadIdentity } from '../src/datadir/load.ts'
import { withBlocks } from '../src/model/head.ts'
import type { CairnNode as InProcessNode } from '../src/node/node.ts'
import { inProcessNode } from '../test/helpers/forge.ts'
import { headsTopic } from '../src/p2p/gossip.ts'
import { plantBlocks, plantHeads, randomBlock } from '../test/adversary/helpers.ts'
import { directoryBomb, eventFile, type Forger, forger, headOf, honestTree } from '../test/adversary/walkForge.ts'
import { CairnNode, quantile } from './nodes.ts'

const N = Number(process.env.N ?? 200)
const RATE = Number(process.env.RATE ?? 20)
const FLOOD = Number(process.env.FLOOD ?? 200)

let counter = 0

/** Publishes N events on A at RATE; @returns B's latency for each it applied within a minute, and how many it did not. */
async function phase(a: CairnNode, b: CairnNode, name: string): Promise<{ latencies: number[]; lost: number }> {
  const sent = new Map<string, number>()
  const start = performance.now()
  const pending: Array<Promise<void>> = []
  for (let i = 0; i < N; i++) {
    const wait = start + (i * 1000) / RATE - performance.now()
    if (wait > 1) await Bun.sleep(wait)
    const id = `${name}-${++counter}`
    sent.set(id, performance.now())
    pending.push(a.publish(id))
  }
  await Promise.all(pending)
  const deadline = performance.now() + 60_000
  while ([...sent.keys()].some((id) => !b.applied.has(id)) && performance.now() < deadline) await Bun.sleep(20)
  const latencies = [...sent].filter(([id]) => b.applied.has(id)).map(([id, t0]) => b.applied.get(id)! - t0)
  return { latencies, lost: N - latencies.length }
}

/** @returns the bytes of a node's block database on disk (with its write-ahead log) */
function blocksOnDisk(dir: string): number {
  return ['blocks.db', 'blocks.db-wal'].map((f) => join(dir, f)).reduce((n, f) => n + (existsSync(f) ? statSync(f).size : 0), 0)
}

/** Puts a forged producer's blocks where M serves them from, and its head where M's head exchange pushes it. */
function serve(m: InProcessNode, p: Forger, head: Uint8Array): void {
  // Through the test helper, whose multiformats is cairn's own: bench/node_modules (OrbitDB's) has another copy.
  plantBlocks(m, p.blocks)
  plantHeads(m, [{ producer: p.id, bytes: head }])
}

const dir = mkdtempSync(join(tmpdir(), 'cairn-adversary-'))
const a = await CairnNode.create(join(dir, 'a'))
const b = await CairnNode.create(join(dir, 'b'), a.swarmKey)
let m: InProcessNode | undefined
try {
  await a.start([])
  await b.start([a.addrs[0]])
  const quiet = await phase(a, b, 'quiet')

  await initDataDir(join(dir, 'm'), { swarmKeyFile: a.swarmKey })
  m = await inProcessNode(join(dir, 'm'), { bootstrap: [a.addrs[0], b.addrs[0]], 'announce-interval': '5s' })
  const member = m
  const self = await loadIdentity(join(dir, 'm'))
  // M's own identity signs the seq bomb (its head is then a valid member's head to replay in the flood);
  // a second identity of M's carries the directory bomb.
  const own: Forger = { key: self.privateKey, id: self.peerId.toString(), blocks: new Map(), hlc: Date.now() }
  const seqBomb = await headOf(own, 1e12, await honestTree(own, [await eventFile(own, 1)]))
  const bomber = await forger()
  const dirBomb = await headOf(bomber, 1_000_000, await directoryBomb(bomber, 5))
  serve(member, own, seqBomb)
  serve(member, bomber, dirBomb)
  const before = { a: blocksOnDisk(join(dir, 'a')), b: blocksOnDisk(join(dir, 'b')) }
  const pubsub = member.ipfs.libp2p.services.pubsub
  const topic = headsTopic(member.network)
  const attack = (async (): Promise<void> => {
    await member.announceAll()
    await pubsub.publish(topic, seqBomb).catch(() => {})
    await pubsub.publish(topic, dirBomb).catch(() => {})
    for (let i = 0; i < FLOOD; i++) {
      await pubsub.publish(topic, withBlocks(seqBomb, [await randomBlock(190 * 1024)])).catch(() => {})
      if (i % 10 === 0) await member.announceAll()
    }
  })()
  const attacked = await phase(a, b, 'attacked')
  await attack
  // The attack landed: B recorded the seq bomb's gap and refused the directory bomb (or the bench says it did not).
  const status = async (): Promise<{
    gaps: Array<{ producer: string; to_seq: number }>
    history: Array<{ producer: string; history_from_seq: number; compacted_seqs: number }>
    producers: Array<{ producer: string; last_error: string | null }>
  }> => (await (await fetch(`http://${b.http}/status`)).json()) as never
  const deadline = performance.now() + 30_000
  let landed = { seq: false, dir: false }
  while (performance.now() < deadline) {
    const s = await status()
    landed = {
      // One gap row 2..1e12, whatever its kind: lost (status gaps), or covered (status history) when the
      // head says its producer prunes plainly only below it, or when B first heard of M at that head.
      seq: s.gaps.some((g) => g.producer === own.id && g.to_seq === 1e12) || s.history.some((h) => h.producer === own.id && (h.compacted_seqs === 1e12 - 1 || h.history_from_seq === 1e12 + 1)),
      dir: s.producers.some((p) => p.producer === bomber.id && (p.last_error ?? '').includes('repeated_directory'))
    }
    if (landed.seq && landed.dir) break
    await Bun.sleep(100)
  }
  const grown = { a: blocksOnDisk(join(dir, 'a')) - before.a, b: blocksOnDisk(join(dir, 'b')) - before.b }

  const row = (name: string, r: { latencies: number[]; lost: number }): string =>
    `| ${name} | ${quantile(r.latencies, 0.5).toFixed(1)} | ${quantile(r.latencies, 0.95).toFixed(1)} | ${quantile(r.latencies, 0.99).toFixed(1)} | ${r.lost} |`
  console.log(`honest events A → B, ${N} at ${RATE}/s per phase; attack: seq bomb (seq 1e12), directory bomb (16^5 entries), ${FLOOD} hints of 190 KiB`)
  console.log('')
  console.log('| phase | p50 (ms) | p95 (ms) | p99 (ms) | lost |')
  console.log('|---|---:|---:|---:|---:|')
  console.log(row('quiet', quiet))
  console.log(row('under attack', attacked))
  console.log('')
  console.log(`p95 under attack / quiet: ${(quantile(attacked.latencies, 0.95) / quantile(quiet.latencies, 0.95)).toFixed(2)}`)
  console.log(`blocks.db grew during the attack: A ${(grown.a / 1024).toFixed(0)} KiB, B ${(grown.b / 1024).toFixed(0)} KiB (hint cache bound: 2,048 KiB, in memory)`)
  console.log(`honest events delivered twice on B's stream: ${b.duplicates}`)
  console.log(`on B: the seq bomb recorded as one gap: ${landed.seq}; the directory bomb refused: ${landed.dir}`)
} finally {
  await m?.stop()
  await b.stop()
  await a.stop()
  rmSync(dir, { recursive: true, force: true })
}
