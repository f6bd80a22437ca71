import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import * as raw from 'multiformats/codecs/raw'
import { BLOCKS_PROTOCOL, BlockExchange, MAX_BATCH } from '../src/p2p/blockExchange.ts'
import { tempDir, waitFor, cairn } from './helpers/process.ts'
import { inProcessNode } from './helpers/forge.ts'
import { silentLog } from '../src/log/logger.ts'
import { eventCount } from './helpers/db.ts'

async function init (parent: string, name: string, swarmKey?: string): Promise<string> {
  const dir = join(parent, name)
  const r = await cairn(['init', '--data', dir, ...(swarmKey != null ? ['--swarm-key', swarmKey] : ['--new-network'])])
  if (r.code !== 0) throw new Error(r.stderr)
  return dir
}

describe('the blocks protocol', () => {
  test('a catch-up fetches its files in batches from the producer', async () => {
    using tmp = tempDir()
    const a = await inProcessNode(await init(tmp.path, 'a'))
    try {
      await Promise.all(Array.from({ length: 300 }, async (_, i) => await a.publish({ type: 'test.bulk', payload: { i } })))
      const b = await inProcessNode(await init(tmp.path, 'b', join(tmp.path, 'a', 'swarm.key')), { bootstrap: [a.ipfs.libp2p.getMultiaddrs()[0].toString()] })
      try {
        await waitFor('300 events on b', () => eventCount(b.config.data) === 300, 30_000)
        expect(a.blockExchange.served).toBeGreaterThanOrEqual(300)
      } finally {
        await b.stop()
      }
    } finally {
      await a.stop()
    }
  })

  test('a block that does not match its CID is refused, and a request is bounded', async () => {
    using tmp = tempDir()
    const a = await inProcessNode(await init(tmp.path, 'a'))
    const liar = await inProcessNode(await init(tmp.path, 'liar', join(tmp.path, 'a', 'swarm.key')), { bootstrap: [a.ipfs.libp2p.getMultiaddrs()[0].toString()] })
    try {
      await liar.ipfs.libp2p.unhandle(BLOCKS_PROTOCOL)
      await new BlockExchange({ libp2p: liar.ipfs.libp2p, get: () => new TextEncoder().encode('not what you asked for'), log: silentLog }).start()
      const asker = new BlockExchange({ libp2p: a.ipfs.libp2p, get: () => undefined, log: silentLog })
      const cid = CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode('wanted')))
      await waitFor('a connected to the liar', () => a.ipfs.libp2p.getConnections(liar.peerId).length > 0, 10_000)
      await expect(asker.fetch(liar.peerId, [cid], AbortSignal.timeout(5000))).rejects.toThrow(/does not match/)
      await expect(asker.fetch(liar.peerId, Array.from({ length: MAX_BATCH + 1 }, () => cid), AbortSignal.timeout(5000))).rejects.toThrow(RangeError)
    } finally {
      await liar.stop()
      await a.stop()
    }
  })
})
