import { describe, expect, test } from 'bun:test'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { HeadGossip, headsTopic, type HeadGossipComponents, type HeadGossipInit } from '../../src/p2p/gossip.ts'
import { HeadLimiter } from '../../src/p2p/headLimiter.ts'
import { signHead, verifyHeadMessage } from '../../src/model/head.ts'
import type { CairnIpfs } from '../../src/p2p/ipfs.ts'

/** A HeadGossip on a pubsub that records what is published. */
function gossip(): { g: HeadGossip; published: Uint8Array[] } {
  const published: Uint8Array[] = []
  const pubsub = {
    topicValidators: new Map(),
    subscribe: () => {},
    addEventListener: () => {},
    removeEventListener: () => {},
    publish: async (_topic: string, data: Uint8Array) => {
      published.push(data)
      return { recipients: [] }
    }
  }
  const init: HeadGossipInit = {
    ipfs: { libp2p: { services: { pubsub } } } as unknown as CairnIpfs,
    network: 'test',
    limiter: {} as HeadLimiter,
    publishHints: true,
    hintsPerSecond: 100,
    screen: () => ({ relay: true }),
    onHint: async () => undefined
  }
  const components = { log: { debug: () => {} }, metrics: { headsAnnounced: { inc: () => {} } }, events: {} } as unknown as HeadGossipComponents
  return { g: new HeadGossip(init, components), published }
}

const head = (seq: number): Uint8Array => new TextEncoder().encode(`head ${seq}`)

describe('HeadGossip', () => {
  test('a head published after stop (a refresh or snapshot that was under way) is neither sent nor held on a timer', () => {
    const { g, published } = gossip()
    g.start()
    g.publish(head(1), [], 1)
    expect(published.length).toBe(1)
    g.stop()
    g.publish(head(2), [], 0)
    g.publish(head(3), [], 1)
    expect(published.length).toBe(1)
    // Nothing was held either: a start after this one sends only its own heads.
    g.start()
    g.stop()
    expect(published.length).toBe(1)
  })
})

describe('HeadGossip credit', () => {
  test('copies of one new head validated at once give the sending peer its credit back once, for the copy that moved its producer forward', async () => {
    const key = await generateKeyPair('Ed25519')
    const producer = peerIdFromPrivateKey(key).toString()
    const signed = await signHead({ producer, seq: 1, root: 'bafkreigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi', hlc: '1763822400000-0001', acks: {} }, key)
    const text = new TextDecoder().decode(signed)
    // The same head in other bytes (white space): each copy is a gossip message of its own, and verifies.
    const copies = [0, 1, 2, 3].map((i) => new TextEncoder().encode(`{${' '.repeat(i + 1)}${text.slice(1)}`))
    const limiter = new HeadLimiter({ rate: 4, accept: async () => undefined, onDropped: () => {} })
    const listeners: Array<(evt: CustomEvent) => void> = []
    let stored = 0
    const applied: Array<Promise<string | undefined>> = []
    const pubsub = {
      topicValidators: new Map<string, (peer: { toString: () => string }, msg: { topic: string; data: Uint8Array }) => Promise<TopicValidatorResult>>(),
      subscribe: () => {},
      addEventListener: (_type: string, fn: (evt: CustomEvent) => void) => {
        listeners.push(fn)
      },
      removeEventListener: () => {}
    }
    const init: HeadGossipInit = {
      ipfs: { libp2p: { services: { pubsub } } } as unknown as CairnIpfs,
      network: 'test',
      limiter,
      publishHints: false,
      hintsPerSecond: 100,
      // like Syncer.judge: news while the stored head is older, nothing written
      screen: (m) => (m.head.seq > stored ? { relay: true } : { relay: false }),
      // like Syncer.acceptHead: the first copy applied stores the head, the others change nothing
      onHint: (bytes) => {
        const done = (async () => {
          const m = await verifyHeadMessage(bytes)
          if (m.head.seq <= stored) return undefined
          stored = m.head.seq
          return m.head.producer
        })()
        applied.push(done)
        return done
      }
    }
    const components = { log: { debug: () => {} }, metrics: { headsReceived: { inc: () => {} } }, events: { safeDispatchEvent: () => {} } } as unknown as HeadGossipComponents
    const g = new HeadGossip(init, components)
    g.start()
    const topic = headsTopic('test')
    const validate = pubsub.topicValidators.get(topic)!
    const from = { toString: () => 'attacker' }
    // gossipsub validates the messages of a frame concurrently, and delivers each one accepted
    const results = await Promise.all(
      copies.map(async (data) => {
        const msg = { topic, data }
        const result = await validate(from, msg)
        if (result === TopicValidatorResult.Accept) for (const fn of listeners) fn(new CustomEvent('gossipsub:message', { detail: { msg, propagationSource: from } }))
        return result
      })
    )
    expect(results.length).toBe(4)
    await Promise.all(applied)
    expect(stored).toBe(1)
    // 4 credits taken, 1 given back: one more head of another producer passes at once, the next waits
    expect(limiter.admit(new TextEncoder().encode('{"head":{"producer":"X","seq":1}}'), 'attacker')).toBe(true)
    expect(limiter.admit(new TextEncoder().encode('{"head":{"producer":"Y","seq":1}}'), 'attacker')).toBeInstanceOf(Promise)
    g.stop()
    limiter.stop()
  })
})
