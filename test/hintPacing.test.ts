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
})
