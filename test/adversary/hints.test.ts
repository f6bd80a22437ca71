import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { withBlocks } from '../../src/model/head.ts'
import { headsTopic } from '../../src/p2p/gossip.ts'
import type { CairnNode } from '../../src/node/node.ts'
import { inProcessNode } from '../helpers/forge.ts'
import { eventCount } from '../helpers/db.ts'
import { initDir, tempDir, waitFor } from '../helpers/process.ts'
import { randomBlock, storedBytes } from './helpers.ts'

/** The in-memory cache of hinted blocks (src/p2p/blockFetcher.ts): nothing a hint carries may be stored beyond it. */
const HINTED_BYTES = 2 * 1024 * 1024

type Pubsub = CairnNode['ipfs']['libp2p']['services']['pubsub']

/** Counts the messages on a topic that a node's validator accepted (delivered and relayed), by size. */
function delivered(node: CairnNode, topic: string): { big: number; all: number } {
  const seen = { big: 0, all: 0 }
  node.ipfs.libp2p.services.pubsub.addEventListener('gossipsub:message', (evt) => {
    const { msg } = (evt as CustomEvent<{ msg: { topic: string; data: Uint8Array } }>).detail
    if (msg.topic !== topic) return
    seen.all++
    if (msg.data.length > 8192) seen.big++
  })
  return seen
}

async function counter(node: CairnNode, name: 'headsReceived' | 'rejected', labels: Record<string, string>): Promise<number> {
  const m = await node.metrics[name].get()
  return m.values.filter((v) => Object.entries(labels).every(([k, x]) => (v.labels as Record<string, unknown>)[k] === x)).reduce((n, v) => n + v.value, 0)
}

describe('a member replaying its head with fresh blocks (fill every disk)', () => {
  test('stores nothing it carried, relays none of it, and honest hints still travel', async () => {
    using tmp = tempDir()
    const fast = { 'heads-per-second': 100_000 }
    const m = await inProcessNode(await initDir(tmp.path, 'm'), fast)
    const key = join(tmp.path, 'm', 'swarm.key')
    const v = await inProcessNode(await initDir(tmp.path, 'v', key), { ...fast, bootstrap: [m.ipfs.libp2p.getMultiaddrs()[0].toString()] })
    const t = await inProcessNode(await initDir(tmp.path, 't', key), { ...fast, bootstrap: [v.ipfs.libp2p.getMultiaddrs()[0].toString()] })
    try {
      const topic = headsTopic(m.network)
      const self = m.peerId.toString()
      await m.publish({ type: 'test.first', payload: {} })
      await waitFor('the first event on v and t', () => eventCount(v.config.data) === 1 && eventCount(t.config.data) === 1, 30_000)
      const pubsub = (n: CairnNode): Pubsub => n.ipfs.libp2p.services.pubsub
      await waitFor('m to see v subscribed, and v to have t in its mesh', () => {
        return (
          pubsub(m)
            .getSubscribers(topic)
            .some((p) => p.equals(v.peerId)) && (pubsub(v) as unknown as { getMeshPeers: (t: string) => string[] }).getMeshPeers(topic).includes(t.peerId.toString())
        )
      })
      const head = m.store.producers.get(self)!.head_message!
      const atV = delivered(v, topic)
      const atT = delivered(t, topic)
      const before = { v: storedBytes(v), t: storedBytes(t) }
      const oldBefore = await counter(v, 'headsReceived', { result: 'old' })

      // The attack: the member's valid head, `big` times with a fresh 190 KiB block (200 at FAULTS_SCALE=10; the
      // default is smaller because @libp2p/pnet's xsalsa20 grows one process-wide WASM memory with the traffic,
      // and bun test runs every file in one process), a quarter as many with a fresh 60 KiB one.
      const big = 20 * Number(process.env.FAULTS_SCALE ?? 1)
      const replays = big + big / 4
      for (let i = 0; i < replays; i++) {
        const block = await randomBlock(i < big ? 190 * 1024 : 60 * 1024)
        await pubsub(m).publish(topic, withBlocks(head, [block]))
      }
      await waitFor(
        `v to judge all ${replays} replays`,
        async () => atV.big + (await counter(v, 'rejected', { reason: 'oversized_hint' })) + (await counter(v, 'headsReceived', { result: 'old' })) - oldBefore >= replays,
        60_000
      )
      // An honest hint after the attack: once t has it, t has had whatever v relayed before it.
      await m.publish({ type: 'test.second', payload: {} })
      await waitFor('the second event on v and t', () => eventCount(v.config.data) === 2 && eventCount(t.config.data) === 2, 30_000)
      const grown = { v: storedBytes(v) - before.v, t: storedBytes(t) - before.t }

      console.log(`hint flood: delivered at v ${atV.big}, at t ${atT.big}; blocks.db grew by ${grown.v} bytes on v, ${grown.t} on t`)
      expect(atV.big).toBe(0)
      expect(atT.big).toBe(0)
      expect(grown.v).toBeLessThan(HINTED_BYTES)
      expect(grown.t).toBeLessThan(HINTED_BYTES)
      // Only the honest commit's few blocks were stored.
      expect(grown.v).toBeLessThan(64 * 1024)
      // The operator sees who did it.
      expect(await counter(v, 'rejected', { reason: 'oversized_hint' })).toBe(big)
      const status = await v.statusJson()
      expect(status.rejections).toContainEqual(expect.objectContaining({ producer: self, reason: 'oversized_hint', count: big }))
      expect(await v.metrics.text()).toContain(`cairn_rejected_by_producer_total{reason="oversized_hint",producer="${self}"} ${big}`)
    } finally {
      await t.stop()
      await v.stop()
      await m.stop()
    }
  }, 180_000)
})
