import { expect, test } from 'bun:test'
import { join } from 'node:path'
import { HEADS_PROTOCOL, HeadExchange } from '../../src/p2p/headExchange.ts'
import { silentLog } from '../../src/log/logger.ts'
import type { CairnNode } from '../../src/node/node.ts'
import { inProcessNode } from '../helpers/forge.ts'
import { initDir, tempDir, waitFor } from '../helpers/process.ts'

/**
 * Nodes a and b (b bootstrapped to a), with a's head exchange replaced by one that records each push of fake
 * heads it reads whole (a part), and b's by one that pushes 1,500 fake heads, a's own last.
 *
 * @returns them, the parts a read, and b's exchange (started once `startB` is called; with `firstReadFails`, its
 * first read of the heads, the greet to a as it starts, throws)
 */
async function fakePushes(
  parent: string
): Promise<{ a: CairnNode; b: CairnNode; parts: string[][]; own: Uint8Array; startB: (options?: { firstReadFails?: boolean; greetRetryMs?: number }) => Promise<HeadExchange> }> {
  const a = await inProcessNode(await initDir(parent, 'a'))
  const b = await inProcessNode(await initDir(parent, 'b', join(parent, 'a', 'swarm.key')), { bootstrap: [a.ipfs.libp2p.getMultiaddrs()[0].toString()] })
  await waitFor('a connected to b', () => a.ipfs.libp2p.getConnections(b.peerId).length > 0, 10_000)
  // (b's exchange greets a as it starts only once b's peer store says a takes pushes: else its first read of the
  // heads would be a later push's, not that greet's)
  await waitFor('b knows a takes pushes', async () => (await b.ipfs.libp2p.peerStore.get(a.peerId)).protocols.includes(HEADS_PROTOCOL), 10_000)
  // A reads pushes into parts (a part ends where a push was read whole).
  await a.ipfs.libp2p.unhandle(HEADS_PROTOCOL)
  const parts: string[][] = []
  let part: string[] = []
  await new HeadExchange({
    libp2p: a.ipfs.libp2p,
    heads: () => [],
    onHead: async (bytes) => {
      const text = new TextDecoder().decode(bytes)
      if (text.startsWith('fake ')) part.push(text)
    },
    onPushed: () => {
      if (part.length > 0) parts.push(part)
      part = []
    },
    log: silentLog
  }).start()
  await b.ipfs.libp2p.unhandle(HEADS_PROTOCOL)
  const heads = Array.from({ length: 1500 }, (_, i) => new TextEncoder().encode(`fake head ${i}`))
  const own = new TextEncoder().encode('fake own head of a')
  const startB = async (options: { firstReadFails?: boolean; greetRetryMs?: number } = {}): Promise<HeadExchange> => {
    let reads = 0
    const exchange = new HeadExchange({
      libp2p: b.ipfs.libp2p,
      heads: () => {
        if (reads++ === 0 && options.firstReadFails === true) throw new Error('the database is busy')
        return [...heads, own]
      },
      headOf: (producer) => (producer === a.peerId.toString() ? own : undefined),
      onHead: async () => {},
      log: silentLog,
      greetRetryMs: options.greetRetryMs
    })
    await exchange.start()
    return exchange
  }
  return { a, b, parts, own, startB }
}

// A node that just started holds its publishes until a peer's push was read (PublishFence): the first part of
// a split push must carry the node's own head, wherever the producer order puts it.
test("the push a peer gets on connecting starts with the head of the peer's own producer", async () => {
  using tmp = tempDir()
  const { a, b, parts, startB } = await fakePushes(tmp.path)
  try {
    await startB()
    // Connecting again makes B push to A as to a peer that just started.
    await b.ipfs.libp2p.hangUp(a.peerId)
    await b.ipfs.libp2p.dial(a.ipfs.libp2p.getMultiaddrs()[0])
    await waitFor('both parts of the push on a', () => parts.length >= 2, 20_000)
    expect(parts[0][0]).toBe('fake own head of a')
  } finally {
    await b.stop()
    await a.stop()
  }
}, 60_000)

// A peer whose push on connecting failed gets the heads from the re-announce instead, and holds its publishes
// until then: that push too must carry its own head in its first part.
test("a re-announce's push starts with the head of the peer's own producer as well", async () => {
  using tmp = tempDir()
  const { a, b, parts, startB } = await fakePushes(tmp.path)
  try {
    // Started after A connected, it greets A as it starts, and that push fails (and is not tried again within
    // the test): A has had no whole push.
    const exchange = await startB({ firstReadFails: true, greetRetryMs: 3_600_000 })
    expect(parts).toEqual([])
    await exchange.pushAll({ changed: true })
    await waitFor('both parts of the push on a', () => parts.length >= 2, 20_000)
    expect(parts[0][0]).toBe('fake own head of a')
  } finally {
    await b.stop()
    await a.stop()
  }
}, 60_000)

// A failed first push is tried again a second later, whatever the re-announce interval: a peer that just
// started holds its publishes for it only so long (--publish-fence).
test("a first push that failed is tried again before any re-announce, with the peer's own head first", async () => {
  using tmp = tempDir()
  const { a, b, parts, startB } = await fakePushes(tmp.path)
  try {
    await startB({ firstReadFails: true })
    await waitFor('both parts of the push on a', () => parts.length >= 2, 20_000)
    expect(parts[0][0]).toBe('fake own head of a')
  } finally {
    await b.stop()
    await a.stop()
  }
}, 60_000)

// The re-announce skips a peer whose last push, within a minute, was of the same heads: the own head put first
// on connecting must not make every connection cost a second push of all of them.
test('a re-announce with no head changed pushes nothing to a peer that just got them on connecting', async () => {
  using tmp = tempDir()
  const { a, b, parts, startB } = await fakePushes(tmp.path)
  try {
    const exchange = await startB()
    await b.ipfs.libp2p.hangUp(a.peerId)
    await b.ipfs.libp2p.dial(a.ipfs.libp2p.getMultiaddrs()[0])
    await waitFor('both parts of the push on a', () => parts.length >= 2, 20_000)
    // The pushes b's exchange makes to a from here on: the re-announce's go through push(), called before
    // pushAll resolves, so its decision for a is known once it has.
    let pushes = 0
    const push = exchange.push.bind(exchange)
    exchange.push = async (peer, heads, options) => {
      if (peer.equals(a.peerId)) pushes++
      await push(peer, heads, options)
    }
    await exchange.pushAll({ changed: true })
    expect(pushes).toBe(0)
    expect(parts.length).toBe(2)
  } finally {
    await b.stop()
    await a.stop()
  }
}, 60_000)
