import { expect, test } from 'bun:test'
import { join } from 'node:path'
import { lpStream } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import { initDataDir } from '../../src/datadir/init.ts'
import { HEADS_PROTOCOL, HeadExchange } from '../../src/p2p/headExchange.ts'
import { inProcessNode } from '../helpers/forge.ts'
import { tempDir, waitFor } from '../helpers/process.ts'
import { recordingLog } from '../helpers/log.ts'

// A peer (it holds the swarm key) whose heads handler takes no push whole gets no whole push: each push it
// sends this node must not make this node push it every head it knows again (one cheap push of a count of 0
// against thousands of heads).
test('pushes from a peer that refuses every push it gets do not each make this node push it all its heads', async () => {
  using tmp = tempDir()
  const dirA = join(tmp.path, 'a')
  const dirB = join(tmp.path, 'b')
  await initDataDir(dirA, { newNetwork: true })
  await initDataDir(dirB, { swarmKeyFile: join(dirA, 'swarm.key') })
  const a = await inProcessNode(dirA, { 'announce-interval': '1h' })
  const b = await inProcessNode(dirB, { bootstrap: [a.ipfs.libp2p.getMultiaddrs()[0].toString()], 'announce-interval': '1h' })
  try {
    await waitFor('a connected to b', () => a.ipfs.libp2p.getConnections(b.peerId).length > 0, 10_000)
    // (an exchange started on a greets b as it starts only once a's peer store says b takes pushes)
    await waitFor('a knows b takes pushes', async () => (await a.ipfs.libp2p.peerStore.get(b.peerId)).protocols.includes(HEADS_PROTOCOL), 10_000)
    // B: resets every push stream a opens to it, and counts them (set up first, so that a's greet as its exchange
    // starts is refused too, whenever it gets there).
    await b.ipfs.libp2p.unhandle(HEADS_PROTOCOL)
    let refused = 0
    await b.ipfs.libp2p.handle(HEADS_PROTOCOL, (stream: Stream) => {
      refused++
      stream.abort(new Error('refused'))
    })
    // A: the node under test, with 1,500 heads to push (two parts).
    await a.ipfs.libp2p.unhandle(HEADS_PROTOCOL)
    const heads = Array.from({ length: 1500 }, (_, i) => new TextEncoder().encode(`fake head ${i}`))
    const peer = b.peerId.toString()
    const { log, count } = recordingLog()
    // (A failed first push is tried again a few times, bounded, by itself: not what this counts. Its next try is
    // an hour away here.)
    await new HeadExchange({ libp2p: a.ipfs.libp2p, heads: () => heads, onHead: async () => {}, log, greetRetryMs: 3_600_000 }).start()
    await waitFor("a's greet as it starts to fail", () => count('greet_retry', peer) === 1, 10_000)
    const before = refused
    // What a decided on a push from b: not to greet b again (greet_back_declined), or to greet it, and that greet
    // failed and waits for its next try (greet_retry, after the one of the greet as a started).
    const decisions = (): number => count('greet_back_declined', peer) + count('greet_retry', peer) - 1
    for (let i = 0; i < 20; i++) {
      const stream = await b.ipfs.libp2p.dialProtocol(a.peerId, HEADS_PROTOCOL)
      await lpStream(stream).write(new TextEncoder().encode('0'))
      await stream.close()
      await waitFor(`a's decision on b's push ${i + 1}`, () => decisions() >= i + 1, 10_000)
    }
    // Each of b's 20 pushes of nothing cost a a push of its heads to b (as many dials as pushes).
    expect(refused - before).toBeLessThan(5)
  } finally {
    await b.stop()
    await a.stop()
  }
}, 60_000)
