import { expect, test } from 'bun:test'
import { join } from 'node:path'
import { HEADS_PROTOCOL, HeadExchange } from '../../src/p2p/headExchange.ts'
import { silentLog } from '../../src/log/logger.ts'
import { inProcessNode } from '../helpers/forge.ts'
import { initDir, tempDir, waitFor } from '../helpers/process.ts'

// A node that just started holds its publishes until a peer's push was read (PublishFence): the first part of
// a split push must carry the node's own head, wherever the producer order puts it.
test("the push a peer gets on connecting starts with the head of the peer's own producer", async () => {
  using tmp = tempDir()
  const a = await inProcessNode(await initDir(tmp.path, 'a'))
  const b = await inProcessNode(await initDir(tmp.path, 'b', join(tmp.path, 'a', 'swarm.key')), { bootstrap: [a.ipfs.libp2p.getMultiaddrs()[0].toString()] })
  try {
    await waitFor('a connected to b', () => a.ipfs.libp2p.getConnections(b.peerId).length > 0, 10_000)
    // A reads pushes into parts (a part ends where a push was read whole); B pushes 1,500 heads, A's last.
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
    await new HeadExchange({
      libp2p: b.ipfs.libp2p,
      heads: () => [...heads, own],
      headOf: (producer) => (producer === a.peerId.toString() ? own : undefined),
      onHead: async () => {},
      log: silentLog
    }).start()
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
