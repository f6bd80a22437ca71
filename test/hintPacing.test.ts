import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import type { CairnNode } from '../src/node/node.ts'
import { inProcessNode } from './helpers/forge.ts'
import { eventCount } from './helpers/db.ts'
import { initDir, tempDir, waitFor } from './helpers/process.ts'

async function counter(node: CairnNode, name: 'headsReceived' | 'headsAnnounced', labels: Record<string, string>): Promise<number> {
  const m = await node.metrics[name].get()
  return m.values.filter((v) => Object.entries(labels).every(([k, x]) => (v.labels as Record<string, unknown>)[k] === x)).reduce((n, v) => n + v.value, 0)
}

describe('hint pacing (hints-per-second)', () => {
  test('a producer committing faster than its peer checks heads sends fewer hints than commits, and the peer coalesces none of them', async () => {
    using tmp = tempDir()
    const a = await inProcessNode(await initDir(tmp.path, 'a'), { 'hints-per-second': 10 })
    const b = await inProcessNode(await initDir(tmp.path, 'b', join(tmp.path, 'a', 'swarm.key')), {
      'heads-per-second': 20,
      bootstrap: [a.ipfs.libp2p.getMultiaddrs()[0].toString()]
    })
    try {
      await a.publish({ type: 'test.first', payload: {} })
      await waitFor('the first event on b', () => eventCount(b.config.data) === 1, 30_000)
      const hintsBefore = await counter(a, 'headsAnnounced', { via: 'gossip' })
      // One commit each, as fast as a lone producer makes them: far over b's 20 heads per second.
      const commits = 150
      for (let i = 0; i < commits; i++) await a.publish({ type: 'test.burst', payload: { i } })
      await waitFor('every event on b', () => eventCount(b.config.data) === commits + 1, 60_000)
      const hints = (await counter(a, 'headsAnnounced', { via: 'gossip' })) - hintsBefore
      expect(hints).toBeGreaterThan(0)
      expect(hints).toBeLessThan(commits)
      expect(await counter(b, 'headsReceived', { result: 'coalesced' })).toBe(0)
    } finally {
      await b.stop()
      await a.stop()
    }
  }, 120_000)

  test("hints of several busy producers relayed by one peer (a hub) pass at each producer's rate: the receiver coalesces none", async () => {
    using tmp = tempDir()
    const hub = await inProcessNode(await initDir(tmp.path, 'hub'))
    const key = join(tmp.path, 'hub', 'swarm.key')
    const via = { bootstrap: [hub.ipfs.libp2p.getMultiaddrs()[0].toString()] }
    const producers = [
      await inProcessNode(await initDir(tmp.path, 'p1', key), { ...via, 'hints-per-second': 10 }),
      await inProcessNode(await initDir(tmp.path, 'p2', key), { ...via, 'hints-per-second': 10 })
    ]
    // b hears both producers only through the hub: 20 hints a second from one peer, over its 15 (and its burst of
    // 15 after 3 s), yet 10 per producer. (Each hint holds a credit of b's 15 until it is applied: a limit far
    // below the default 200 makes that window small on a loaded machine, hence not less than this.)
    const b = await inProcessNode(await initDir(tmp.path, 'b', key), { ...via, 'heads-per-second': 15 })
    try {
      for (const p of producers) await p.publish({ type: 'test.first', payload: {} })
      await waitFor('the first events on b', () => eventCount(b.config.data) === 2, 30_000)
      for (const p of producers) expect(b.ipfs.libp2p.getConnections(p.ipfs.libp2p.peerId).length).toBe(0)
      // Each producer commits one event after another for 6 s: its pacer hints 10 times a second.
      const until = Date.now() + 6_000
      const counts = await Promise.all(
        producers.map(async (p) => {
          let n = 0
          while (Date.now() < until) await p.publish({ type: 'test.burst', payload: { n: n++ } })
          return n
        })
      )
      const total = 2 + counts[0] + counts[1]
      await waitFor('every event on b', () => eventCount(b.config.data) === total, 60_000)
      expect(await counter(b, 'headsReceived', { result: 'coalesced' })).toBe(0)
      for (const p of producers) expect(b.ipfs.libp2p.getConnections(p.ipfs.libp2p.peerId).length).toBe(0)
    } finally {
      await b.stop()
      for (const p of producers) await p.stop()
      await hub.stop()
    }
  }, 120_000)
})
