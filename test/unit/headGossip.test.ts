import { describe, expect, test } from 'bun:test'
import { HeadGossip, type HeadGossipComponents, type HeadGossipInit } from '../../src/p2p/gossip.ts'
import type { HeadLimiter } from '../../src/p2p/headLimiter.ts'
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
    onHint: () => {}
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
