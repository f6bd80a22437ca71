import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import * as raw from 'multiformats/codecs/raw'
import { BLOCKS_PROTOCOL, BlockExchange, MAX_BATCH } from '../src/p2p/blockExchange.ts'
import { HEADS_PROTOCOL, HeadExchange } from '../src/p2p/headExchange.ts'
import { initDir, tempDir, waitFor } from './helpers/process.ts'
import { inProcessNode } from './helpers/forge.ts'
import { silentLog } from '../src/log/logger.ts'
import { eventCount } from './helpers/db.ts'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { openDatabase } from '../src/runtime/sqlite.ts'
import { migrate } from '../src/store/migrations.ts'
import { openBlockDatabase, SqliteBlockstore } from '../src/store/blockstore.ts'
import { testOutbox } from './helpers/outbox.ts'
import { CairnEventBus } from '../src/node/events.ts'
import { withBlocks } from '../src/model/head.ts'
import type { AnnouncingBroker } from '../src/p2p/announce.ts'
import { headsTopic } from '../src/p2p/gossip.ts'

describe('the blocks protocol', () => {
  test('a catch-up fetches its files in batches from the producer', async () => {
    using tmp = tempDir()
    const a = await inProcessNode(await initDir(tmp.path, 'a'))
    try {
      await Promise.all(Array.from({ length: 300 }, async (_, i) => await a.publish({ type: 'test.bulk', payload: { i } })))
      const b = await inProcessNode(await initDir(tmp.path, 'b', join(tmp.path, 'a', 'swarm.key')), { bootstrap: [a.ipfs.libp2p.getMultiaddrs()[0].toString()] })
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
    const a = await inProcessNode(await initDir(tmp.path, 'a'))
    const liar = await inProcessNode(await initDir(tmp.path, 'liar', join(tmp.path, 'a', 'swarm.key')), { bootstrap: [a.ipfs.libp2p.getMultiaddrs()[0].toString()] })
    try {
      await liar.ipfs.libp2p.unhandle(BLOCKS_PROTOCOL)
      await new BlockExchange({ libp2p: liar.ipfs.libp2p, get: () => new TextEncoder().encode('not what you asked for'), log: silentLog }).start()
      const asker = new BlockExchange({ libp2p: a.ipfs.libp2p, get: () => undefined, log: silentLog })
      const cid = CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode('wanted')))
      await waitFor('a connected to the liar', () => a.ipfs.libp2p.getConnections(liar.peerId).length > 0, 10_000)
      await expect(asker.fetch(liar.peerId, [cid], AbortSignal.timeout(5000))).rejects.toThrow(/does not match/)
      await expect(
        asker.fetch(
          liar.peerId,
          Array.from({ length: MAX_BATCH + 1 }, () => cid),
          AbortSignal.timeout(5000)
        )
      ).rejects.toThrow(RangeError)
    } finally {
      await liar.stop()
      await a.stop()
    }
  })

  test('a walk waiting for a block ends as soon as a hint that arrives out of order brings it', async () => {
    // A producer's outbox in this process: each commit's hint carries that commit's blocks.
    const key = await generateKeyPair('Ed25519')
    const db = await openDatabase(':memory:')
    migrate(db)
    const hints: Uint8Array[] = []
    const files: CID[] = []
    const events = new CairnEventBus()
    // a commit's blocks: its event file first, then the directories
    events.addEventListener('outbox:committed', ({ detail: { head, blocks } }) => {
      hints.push(withBlocks(head, blocks))
      files.push(blocks[0].cid)
    })
    const outbox = testOutbox({
      db,
      blocks: new SqliteBlockstore(await openBlockDatabase(':memory:')),
      privateKey: key,
      maxBatch: 100,
      maxEventSize: 256 * 1024,
      maxDepth: 64,
      events
    })
    await outbox.publish({ type: 'test.first', payload: {} })
    await outbox.publish({ type: 'test.second', payload: {} })
    using tmp = tempDir()
    // No peer holds the first file, and a fetch would wait a minute for one.
    const b = await inProcessNode(await initDir(tmp.path, 'b'), { 'fetch-timeout': '60s' })
    try {
      await b.offerHead(hints[1])
      const brokers = (b.ipfs as unknown as { blockBrokers: AnnouncingBroker[] }).blockBrokers
      const wants = (): string[] => brokers.flatMap((k) => k.bitswap?.getWantlist?.() ?? []).map((w) => w.cid.toString())
      await waitFor('b to ask its peers for the first file', () => wants().includes(files[0].toString()), 5000)
      expect(eventCount(b.config.data)).toBe(0)
      await b.offerHead(hints[0])
      await waitFor('both events on b', () => eventCount(b.config.data) === 2, 5000)
    } finally {
      await b.stop()
      db.close()
    }
  })
})

describe('the head exchange', () => {
  test('the re-announce pushes a peer the heads only when they changed, an announce always', async () => {
    using tmp = tempDir()
    const a = await inProcessNode(await initDir(tmp.path, 'a'))
    const b = await inProcessNode(await initDir(tmp.path, 'b', join(tmp.path, 'a', 'swarm.key')), { bootstrap: [a.ipfs.libp2p.getMultiaddrs()[0].toString()] })
    try {
      // b counts what reaches it of the heads a pushes here (a's own exchange may push its real ones)
      const received: string[] = []
      await b.ipfs.libp2p.unhandle(HEADS_PROTOCOL)
      const onHead = async (bytes: Uint8Array): Promise<void> => {
        const h = new TextDecoder().decode(bytes)
        if (h.startsWith('head ')) received.push(h)
      }
      await new HeadExchange({ libp2p: b.ipfs.libp2p, heads: () => [], onHead, log: silentLog }).start()
      const heads = [new TextEncoder().encode('head 1'), new TextEncoder().encode('head 2')]
      // Every push opens a stream, and pushAll returns once its streams are written: counting the dials
      // of the pusher tells exactly what it sent, without waiting to see that nothing more arrives.
      const libp2p = a.ipfs.libp2p
      let dials = 0
      const counting = new Proxy(libp2p, {
        get: (target, key) => {
          if (key === 'dialProtocol') {
            return (...args: Parameters<typeof libp2p.dialProtocol>) => {
              dials++
              return target.dialProtocol(...args)
            }
          }
          const value = Reflect.get(target, key)
          return typeof value === 'function' ? value.bind(target) : value
        }
      })
      const pusher = new HeadExchange({ libp2p: counting, heads: () => heads.map((h) => h.slice()), log: silentLog, onHead: async () => {} })
      await waitFor('a connected to b', () => libp2p.getConnections(b.peerId).length > 0, 10_000)
      const pushed = async (options: { changed?: boolean }, expected: { dials: number; heads: number }): Promise<void> => {
        await pusher.pushAll(options)
        expect(dials).toBe(expected.dials)
        await waitFor(`${expected.heads} heads on b`, () => received.length >= expected.heads, 5000)
        expect(received).toHaveLength(expected.heads)
      }

      await pushed({ changed: true }, { dials: 1, heads: 2 })
      await pushed({ changed: true }, { dials: 1, heads: 2 })
      heads[1] = new TextEncoder().encode('head 2, newer')
      await pushed({ changed: true }, { dials: 2, heads: 4 })
      expect(received.slice(2)).toEqual(['head 1', 'head 2, newer'])
      await pushed({}, { dials: 3, heads: 6 })
    } finally {
      await b.stop()
      await a.stop()
    }
  })
})

describe('gossip copies', () => {
  test('a node counts every copy of a hint it receives, and the duplicates among them, in /metrics', async () => {
    using tmp = tempDir()
    const a = await inProcessNode(await initDir(tmp.path, 'a'))
    const key = join(tmp.path, 'a', 'swarm.key')
    const addr = a.ipfs.libp2p.getMultiaddrs()[0].toString()
    const b = await inProcessNode(await initDir(tmp.path, 'b', key), { bootstrap: [addr] })
    const c = await inProcessNode(await initDir(tmp.path, 'c', key), { bootstrap: [addr, b.ipfs.libp2p.getMultiaddrs()[0].toString()] })
    try {
      const topic = headsTopic(a.network)
      await waitFor('c subscribed to the hints as a sees it', () => a.ipfs.libp2p.services.pubsub.getSubscribers(topic).some((p) => p.equals(c.peerId)), 30_000)
      for (let i = 0; i < 3; i++) await a.publish({ type: 'test.gossip', payload: { i } })
      const counted = async (name: string): Promise<number> => {
        const line = (await c.metrics.registry.metrics()).split('\n').find((l) => l.startsWith(`${name}{topic="hints"}`))
        return line == null ? 0 : Number(line.split(' ')[1])
      }
      await waitFor('three hints received by c', async () => (await counted('cairn_gossip_received_total')) >= 3, 30_000)
      expect(await counted('cairn_gossip_duplicates_total')).toBeLessThan(await counted('cairn_gossip_received_total'))
    } finally {
      await c.stop()
      await b.stop()
      await a.stop()
    }
  })
})
