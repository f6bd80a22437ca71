import { expect, test } from 'bun:test'
import { join } from 'node:path'
import { lpStream } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import { initDataDir } from '../../src/datadir/init.ts'
import { HEADS_PROTOCOL, HeadExchange } from '../../src/p2p/headExchange.ts'
import type { CairnNode } from '../../src/node/node.ts'
import { inProcessNode } from '../helpers/forge.ts'
import { tempDir, waitFor } from '../helpers/process.ts'
import { recordingLog } from '../helpers/log.ts'

/** @returns nodes a and b (b bootstrapped to a, connected), each with its own head exchange stopped */
async function bare(parent: string): Promise<{ a: CairnNode; b: CairnNode }> {
  const dirA = join(parent, 'a')
  const dirB = join(parent, 'b')
  await initDataDir(dirA, { newNetwork: true })
  await initDataDir(dirB, { swarmKeyFile: join(dirA, 'swarm.key') })
  const a = await inProcessNode(dirA, { 'announce-interval': '1h' })
  const b = await inProcessNode(dirB, { bootstrap: [a.ipfs.libp2p.getMultiaddrs()[0].toString()], 'announce-interval': '1h' })
  await waitFor('a connected to b', () => a.ipfs.libp2p.getConnections(b.peerId).length > 0, 10_000)
  // (an exchange started on a greets b only once a's peer store says b takes pushes)
  await waitFor('a knows b takes pushes', async () => (await a.ipfs.libp2p.peerStore.get(b.peerId)).protocols.includes(HEADS_PROTOCOL), 10_000)
  await ownExchange(a).stop()
  await ownExchange(b).stop()
  return { a, b }
}

/** @returns the head exchange `node` runs (stopped by the tests, so that only theirs pushes and greets back) */
function ownExchange(node: CairnNode): HeadExchange {
  return (node as unknown as { running: { headExchange: HeadExchange } }).running.headExchange
}

// A peer that resets every push stream: its first push is tried GREET_TRIES (4) times in all, no more, and a
// stop ends the tries still to come. (Counted as the exchange's reads of the heads, one a push: a's node pushes
// to b by itself too.)
test('a first push that keeps failing is tried four times in all, and not after a stop', async () => {
  using tmp = tempDir()
  const { a, b } = await bare(tmp.path)
  try {
    await b.ipfs.libp2p.handle(HEADS_PROTOCOL, (stream: Stream) => {
      stream.abort(new Error('refused'))
    })
    const peer = b.peerId.toString()
    let greets = 0
    const heads = (): Uint8Array[] => {
      greets++
      return []
    }
    const first = recordingLog()
    const exchange = new HeadExchange({ libp2p: a.ipfs.libp2p, heads, onHead: async () => {}, log: first.log, greetRetryMs: 100 })
    await exchange.start()
    // The exchange logs, as its last failed try ends, that no more come (a fifth would be scheduled instead).
    await waitFor('the tries to run out', () => first.count('greet_tries_ended', peer) > 0, 10_000)
    expect(greets).toBe(4)
    // …and no fifth waits: three retries were scheduled, none is left
    expect(first.count('greet_retry', peer)).toBe(3)
    expect((exchange as unknown as { greetRetries: Map<string, unknown> }).greetRetries.size).toBe(0)
    await exchange.stop()

    greets = 0
    const second = recordingLog()
    const again = new HeadExchange({ libp2p: a.ipfs.libp2p, heads, onHead: async () => {}, log: second.log, greetRetryMs: 300 })
    await again.start()
    // The first try failed, and the next one waits (its timer is set as this is logged, 300 ms away).
    await waitFor('the second try to be scheduled', () => second.count('greet_retry', peer) > 0, 10_000)
    await again.stop()
    // The stop dropped the try that waited, and logged it (a try that ran after the stop would log its end too):
    // no timer is left to make another.
    await waitFor('the tries to end', () => second.count('greet_tries_ended', peer) > 0, 10_000)
    expect(greets).toBe(1)
  } finally {
    await b.stop()
    await a.stop()
  }
}, 60_000)

// A peer that restarts (disconnects, connects again, and greets once its head exchange is up) is greeted back:
// the tries of a first push that failed on its earlier connection must not land on the new one, where they mark
// it greeted (so its greet is not answered) while its handler is not up yet.
test('the tries of a failed first push end with the connection: a peer that reconnects and then greets is greeted back', async () => {
  using tmp = tempDir()
  const { a, b } = await bare(tmp.path)
  try {
    let failing = true
    const { log, count } = recordingLog()
    const exchange = new HeadExchange({
      libp2p: a.ipfs.libp2p,
      heads: () => {
        if (failing) throw new Error('the database is busy')
        return []
      },
      onHead: async () => {},
      log,
      greetRetryMs: 500
    })
    try {
      // a greets b (its peer store says b takes pushes) as it starts, and that push fails.
      await exchange.start()
      failing = false
      // b restarts: a new connection, on which b has no heads handler until its exchange starts.
      await b.ipfs.libp2p.hangUp(a.peerId)
      await waitFor('a disconnected from b', () => a.ipfs.libp2p.getConnections(b.peerId).length === 0, 10_000)
      await b.ipfs.libp2p.dial(a.ipfs.libp2p.getMultiaddrs()[0])
      await waitFor('a connected to b again', () => a.ipfs.libp2p.getConnections(b.peerId).length > 0, 10_000)
      // The first connection's tries are over: its disconnect dropped the one that waited (or ended the one under
      // way), which logs that no more come. (Were they not, they would run out on this connection, and log it then.)
      await waitFor("the first connection's greet tries to end", () => count('greet_tries_ended', b.peerId.toString()) > 0, 15_000)
      // b's exchange is up: it takes pushes, and greets a.
      let got = 0
      await b.ipfs.libp2p.handle(HEADS_PROTOCOL, async (stream: Stream) => {
        got++
        await stream.close().catch(() => {})
      })
      const stream = await b.ipfs.libp2p.dialProtocol(a.peerId, HEADS_PROTOCOL)
      await lpStream(stream).write(new TextEncoder().encode('0'))
      await stream.close()
      await waitFor('a greets b back', () => got > 0, 5_000)
    } finally {
      await exchange.stop()
    }
  } finally {
    await b.stop()
    await a.stop()
  }
}, 60_000)
