import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { loadIdentity } from '../../src/datadir/load.ts'
import type { CairnNode } from '../../src/node/node.ts'
import { headsTopic } from '../../src/p2p/gossip.ts'
import { eventCount } from '../helpers/db.ts'
import { inProcessNode } from '../helpers/forge.ts'
import { initDir, tempDir, waitFor } from '../helpers/process.ts'

/** @returns the producers of the hints a node's validator let through on `topic`, in order */
function hintsFrom(node: CairnNode, topic: string): string[] {
  const producers: string[] = []
  node.ipfs.libp2p.services.pubsub.addEventListener('gossipsub:message', (evt) => {
    const { msg } = (evt as CustomEvent<{ msg: { topic: string; data: Uint8Array } }>).detail
    if (msg.topic !== topic) return
    producers.push((JSON.parse(new TextDecoder().decode(msg.data)) as { head: { producer: string } }).head.producer)
  })
  return producers
}

describe('with a members list', () => {
  test("a non-member's hint is ignored where it arrives: not relayed, counted against it, its events never taken", async () => {
    using tmp = tempDir()
    const v = await initDir(tmp.path, 'v')
    const key = join(v, 'swarm.key')
    const t = await initDir(tmp.path, 't', key)
    const o = await initDir(tmp.path, 'o', key)
    const members = [(await loadIdentity(v)).peerId.toString(), (await loadIdentity(t)).peerId.toString()]
    const outsider = (await loadIdentity(o)).peerId.toString()
    const nv = await inProcessNode(v, { members })
    const nt = await inProcessNode(t, { members, bootstrap: [nv.ipfs.libp2p.getMultiaddrs()[0].toString()] })
    const no = await inProcessNode(o, { bootstrap: [nv.ipfs.libp2p.getMultiaddrs()[0].toString()] })
    try {
      const topic = headsTopic(nv.network)
      const pubsub = (n: CairnNode) => n.ipfs.libp2p.services.pubsub
      await waitFor('the outsider to see v subscribed, and v to have t in its mesh', () => {
        return (
          pubsub(no)
            .getSubscribers(topic)
            .some((p) => p.equals(nv.peerId)) && (pubsub(nv) as unknown as { getMeshPeers: (t: string) => string[] }).getMeshPeers(topic).includes(nt.peerId.toString())
        )
      })
      const atV = hintsFrom(nv, topic)
      const atT = hintsFrom(nt, topic)
      await no.publish({ type: 'test.outsider', payload: {} })
      await waitFor('v to refuse the outsider', async () => {
        const m = await nv.metrics.rejected.get()
        return m.values.some((x) => x.labels.reason === 'not_member' && x.value >= 1)
      })
      // An honest hint after it: once t has v's, t has had whatever v relayed before.
      await nv.publish({ type: 'test.member', payload: {} })
      await waitFor("v's event on t", () => eventCount(t) === 1)
      expect({ atV: atV.filter((p) => p === outsider).length, atT: atT.filter((p) => p === outsider).length, onV: eventCount(v), onT: eventCount(t) }).toEqual({
        atV: 0,
        atT: 0,
        onV: 1,
        onT: 1
      })
    } finally {
      await no.stop()
      await nt.stop()
      await nv.stop()
    }
  }, 120_000)
})
