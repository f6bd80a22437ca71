import { describe, expect, test } from 'bun:test'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { verifyHeadMessage, withBlocks } from '../../src/model/head.ts'
import { headsTopic } from '../../src/p2p/gossip.ts'
import { HeadRelays } from '../../src/sync/headRelays.ts'
import { inProcessNode } from '../helpers/forge.ts'
import { initDir, tempDir } from '../helpers/process.ts'
import { forgedHead, mintProducer, randomBlock } from './helpers.ts'

describe('late hints (older than the stored head, ahead of the processed one)', () => {
  test('one late head is relayed once, not once per copy with other carried blocks', async () => {
    using tmp = tempDir()
    const v = await inProcessNode(await initDir(tmp.path, 'v'), { 'heads-per-second': 100_000 })
    try {
      const p = await mintProducer()
      const heads = await Promise.all([1, 2, 3, 4].map(async (seq) => await forgedHead(p, seq)))
      // v stored p's head 4 and processed p up to seq 1: heads 2 and 3 are late.
      const stored = (await verifyHeadMessage(heads[3])).head
      const processed = (await verifyHeadMessage(heads[0])).head
      v.store.producers.putHead({ producer: p.id, seq: 4, root: stored.root, hlc: stored.hlc, acks: {}, signed: heads[3], receivedAt: Date.now() }, { root: processed.root, processedSeq: 1 })
      const topic = headsTopic(v.network)
      const validate = v.ipfs.libp2p.services.pubsub.topicValidators.get(topic)!
      const hint = async (signed: Uint8Array): Promise<TopicValidatorResult> => await validate(v.peerId, { type: 'unsigned', topic, data: withBlocks(signed, [await randomBlock(1024)]) })

      expect(await hint(heads[1])).toBe(TopicValidatorResult.Accept)
      // The same signed head with other blocks: a new gossip message, the same late head.
      for (let i = 0; i < 5; i++) expect(await hint(heads[1])).toBe(TopicValidatorResult.Ignore)
      expect(await hint(heads[2])).toBe(TopicValidatorResult.Accept)
      expect(await hint(heads[2])).toBe(TopicValidatorResult.Ignore)
      // Processed already: old.
      expect(await hint(heads[0])).toBe(TopicValidatorResult.Ignore)
    } finally {
      await v.stop()
    }
  })

  test('copies of one new head validated at once are relayed once, not once per copy with other carried blocks', async () => {
    using tmp = tempDir()
    const v = await inProcessNode(await initDir(tmp.path, 'v'), { 'heads-per-second': 100_000 })
    try {
      const p = await mintProducer()
      const signed = await forgedHead(p, 1)
      const topic = headsTopic(v.network)
      const validate = v.ipfs.libp2p.services.pubsub.topicValidators.get(topic)!
      const copies = await Promise.all([1, 2, 3, 4, 5].map(async () => withBlocks(signed, [await randomBlock(1024)])))
      // gossipsub validates the messages of a frame concurrently: the head is stored only once one is applied
      const results = await Promise.all(copies.map(async (data) => await validate(v.peerId, { type: 'unsigned', topic, data })))
      expect(results.filter((r) => r === TopicValidatorResult.Accept).length).toBe(1)
      expect(results.filter((r) => r === TopicValidatorResult.Ignore).length).toBe(4)
    } finally {
      await v.stop()
    }
  })

  test('remembers at most its bound, the oldest forgotten first', () => {
    const relays = new HeadRelays(2)
    expect(relays.first('p', 1, 'a')).toBe(true)
    expect(relays.first('p', 2, 'a')).toBe(true)
    expect(relays.first('p', 1, 'a')).toBe(false)
    expect(relays.first('q', 1, 'a')).toBe(true)
    expect(relays.first('p', 1, 'a')).toBe(true)
    expect(relays.first('q', 1, 'a')).toBe(false)
    // the same seq signed again with a later clock is another head
    expect(relays.first('q', 1, 'b')).toBe(true)
  })
})
