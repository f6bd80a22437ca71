import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { HEADS_PROTOCOL, HeadExchange } from '../../src/p2p/headExchange.ts'
import { silentLog } from '../../src/log/logger.ts'
import { inProcessNode } from '../helpers/forge.ts'
import { initDir, tempDir, waitFor } from '../helpers/process.ts'
import { fakePeerId, forgedHead, mintProducer, plantHeads } from './helpers.ts'

describe('cutting off catch-up through the head exchange', () => {
  test('one 68 KiB head (many acks) in a push does not stop b from learning the other producers', async () => {
    using tmp = tempDir()
    const a = await inProcessNode(await initDir(tmp.path, 'a'))
    const producers = await Promise.all(Array.from({ length: 6 }, async () => await mintProducer()))
    producers.sort((x, y) => (x.id < y.id ? -1 : 1))
    const acks: Record<string, number> = {}
    for (let i = 0; i < 1300; i++) acks[fakePeerId(i)] = i
    // The big head sorts first: a push that stopped at it would carry none of the others.
    const big = await forgedHead(producers[0], 1, acks)
    expect(big.length).toBeGreaterThan(68 * 1024)
    plantHeads(a, [{ producer: producers[0].id, bytes: big }, ...(await Promise.all(producers.slice(1).map(async (p) => ({ producer: p.id, bytes: await forgedHead(p, 1) }))))])
    const b = await inProcessNode(await initDir(tmp.path, 'b', join(tmp.path, 'a', 'swarm.key')), { bootstrap: [a.ipfs.libp2p.getMultiaddrs()[0].toString()] })
    try {
      await waitFor('a connected to b', () => a.ipfs.libp2p.getConnections(b.peerId).length > 0, 10_000)
      await a.announceAll()
      await waitFor('b to know every producer a pushed', () => producers.every((p) => b.store.producers.get(p.id)?.head_seq === 1), 20_000)
    } finally {
      await b.stop()
      await a.stop()
    }
  }, 60_000)

  test('a push of 10,001 heads is split and delivered whole', async () => {
    using tmp = tempDir()
    const a = await inProcessNode(await initDir(tmp.path, 'a'))
    const b = await inProcessNode(await initDir(tmp.path, 'b', join(tmp.path, 'a', 'swarm.key')), { bootstrap: [a.ipfs.libp2p.getMultiaddrs()[0].toString()] })
    try {
      let received = 0
      await b.ipfs.libp2p.unhandle(HEADS_PROTOCOL)
      const receiver = new HeadExchange({
        libp2p: b.ipfs.libp2p,
        heads: () => [],
        onHead: async (bytes) => {
          if (new TextDecoder().decode(bytes).startsWith('head ')) received++
        },
        log: silentLog
      })
      await receiver.start()
      const heads = Array.from({ length: 10_001 }, (_, i) => new TextEncoder().encode(`head ${i}`))
      const pusher = new HeadExchange({ libp2p: a.ipfs.libp2p, heads: () => heads, onHead: async () => {}, log: silentLog })
      await waitFor('a connected to b', () => a.ipfs.libp2p.getConnections(b.peerId).length > 0, 10_000)
      await pusher.push(b.peerId)
      await waitFor('all 10,001 heads on b', () => received >= 10_001, 20_000)
      expect(received).toBe(10_001)
      await receiver.stop()
    } finally {
      await b.stop()
      await a.stop()
    }
  }, 60_000)

  test('without a members list, a node tracks at most --max-producers producers and counts the rest', async () => {
    using tmp = tempDir()
    const a = await inProcessNode(await initDir(tmp.path, 'a'))
    const producers = await Promise.all(Array.from({ length: 8 }, async () => await mintProducer()))
    plantHeads(a, await Promise.all(producers.map(async (p) => ({ producer: p.id, bytes: await forgedHead(p, 1) }))))
    const b = await inProcessNode(await initDir(tmp.path, 'b', join(tmp.path, 'a', 'swarm.key')), {
      bootstrap: [a.ipfs.libp2p.getMultiaddrs()[0].toString()],
      'max-producers': 4
    })
    try {
      await waitFor('a connected to b', () => a.ipfs.libp2p.getConnections(b.peerId).length > 0, 10_000)
      await a.announceAll()
      const refused = async (): Promise<number> => (await b.metrics.rejected.get()).values.find((v) => v.labels.reason === 'too_many_producers')?.value ?? 0
      await waitFor('b to refuse the producers over its cap', async () => (await refused()) > 0, 20_000)
      expect(b.store.producers.count()).toBeLessThanOrEqual(4)
    } finally {
      await b.stop()
      await a.stop()
    }
  }, 60_000)
})
