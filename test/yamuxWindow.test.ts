import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { byteStream } from '@libp2p/utils'
import { canWait } from '../src/p2p/yamuxWindow.ts'
import { inProcessNode } from './helpers/forge.ts'
import { initDir, tempDir, waitFor } from './helpers/process.ts'

const PROTOCOL = '/cairn-test/bulk/1'
/** Four times yamux's initial receive window of 256 KiB: the sender needs window updates to finish. */
const TOTAL = 1024 * 1024
const PIECE = 1024

describe('yamux window updates', () => {
  test('a stream carries four windows of data in 1 KiB messages, one at a time, with a window update per half window, not per message', async () => {
    using tmp = tempDir()
    const a = await inProcessNode(await initDir(tmp.path, 'a'))
    const b = await inProcessNode(await initDir(tmp.path, 'b', join(tmp.path, 'a', 'swarm.key')), { bootstrap: [a.ipfs.libp2p.getMultiaddrs()[0].toString()] })
    try {
      let received = 0
      let got = Promise.withResolvers<void>()
      const done = Promise.withResolvers<void>()
      await b.ipfs.libp2p.handle(PROTOCOL, (stream) => {
        void (async () => {
          const bytes = byteStream(stream)
          while (received < TOTAL) {
            received += (await bytes.read({ bytes: PIECE, signal: AbortSignal.timeout(30_000) })).byteLength
            got.resolve()
          }
          done.resolve()
        })().catch(done.reject)
      })
      const connection = await waitFor('b connected to a', () => b.ipfs.libp2p.getConnections()[0])
      // The window updates b sends on the connection, counted at its muxer (type 1: WindowUpdate, no flag);
      // a stream takes the muxer's sendFrame when it opens, so this sees the stream opened below.
      const muxer = (connection as unknown as { muxer: { sendFrame: (header: { type: number; flag: number }, ...rest: unknown[]) => unknown } }).muxer
      const sendFrame = muxer.sendFrame.bind(muxer)
      let updates = 0
      muxer.sendFrame = (header, ...rest) => {
        if (header.type === 1 && header.flag === 0) updates++
        return sendFrame(header, ...rest)
      }
      const stream = await a.ipfs.libp2p.dialProtocol(b.ipfs.libp2p.peerId, PROTOCOL)
      const piece = new Uint8Array(PIECE).fill(7)
      // One message at a time, each read before the next goes (as hints and pushes arrive): one frame each.
      for (let sent = 0; sent < TOTAL; sent += PIECE) {
        got = Promise.withResolvers<void>()
        if (!stream.send(piece)) await new Promise((resolve) => stream.addEventListener('drain', resolve, { once: true }))
        await got.promise
      }
      await done.promise
      expect(received).toBe(TOTAL)
      // One per half window (128 KiB) of the 1 MiB, and a few for other streams libp2p used meanwhile;
      // one per message before: over a thousand.
      expect(updates).toBeGreaterThan(0)
      expect(updates).toBeLessThan(64)
      await stream.close()
    } finally {
      await b.stop()
      await a.stop()
    }
  })

  test('an update waits only while over half the window is unused and it would carry no flag', () => {
    const window = 256 * 1024
    expect(canWait({ state: 3, recvWindow: window, recvWindowCapacity: window - 1024 })).toBe(true)
    expect(canWait({ state: 3, recvWindow: window, recvWindowCapacity: window / 2 })).toBe(false)
    expect(canWait({ state: 3, recvWindow: window, recvWindowCapacity: 0 })).toBe(false)
    // Init and SYNReceived send the stream's first flags; Paused keeps its own bookkeeping.
    for (const state of [0, 2, 5]) expect(canWait({ state, recvWindow: window, recvWindowCapacity: window - 1 })).toBe(false)
  })
})
