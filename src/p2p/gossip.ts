import { TopicValidatorResult } from '@libp2p/gossipsub'
import type { Components } from '../node/components.ts'
import { trace } from '../log/trace.ts'
import { verifyHead } from '../model/head.ts'
import type { HeadLimiter } from './headLimiter.ts'
import type { CairnIpfs } from './ipfs.ts'

export interface HeadGossipInit {
  ipfs: CairnIpfs
  /** the network id: names the topic */
  network: string
  /** admits a hint before its signature is checked, per sending peer */
  limiter: HeadLimiter
  /** whether this node publishes its own new heads as hints (it always receives them) */
  publishHints: boolean
  /** receives each hint that the validator accepted, with the peer that sent it */
  onHint: (bytes: Uint8Array, peer: string) => void
}

export type HeadGossipComponents = Pick<Components, 'log' | 'metrics'>

/** @returns the gossipsub topic on which a network's new heads are hinted */
export function headsTopic(network: string): string {
  return `cairn/${network}/heads`
}

/**
 * Hints of new heads over gossipsub. A hint is a head its producer signed (with, when small, the blocks of
 * its commit); gossip only says "there is something new", the producer's directory stays the source of
 * truth. A hint's signature is checked before gossipsub relays it, once the sending peer's rate limit lets
 * it through; the check's result is reused when the hint is applied.
 */
export class HeadGossip {
  private readonly init: HeadGossipInit
  private readonly components: HeadGossipComponents
  readonly topic: string
  private started = false
  private readonly onMessage = (evt: CustomEvent<{ msg: { topic: string; data: Uint8Array }; propagationSource: { toString: () => string } }>): void => {
    const { msg, propagationSource } = evt.detail
    if (msg.topic !== this.topic) return
    this.init.onHint(msg.data, propagationSource.toString())
  }

  constructor(init: HeadGossipInit, components: HeadGossipComponents) {
    this.init = init
    this.components = components
    this.topic = headsTopic(init.network)
  }

  start(): void {
    if (this.started) return
    this.started = true
    const pubsub = this.init.ipfs.libp2p.services.pubsub
    pubsub.topicValidators.set(this.topic, async (peer, msg) => {
      trace('hint.validating')
      if (!(await this.init.limiter.admit(msg.data, peer.toString()))) return TopicValidatorResult.Ignore
      try {
        const head = await verifyHead(msg.data)
        trace('hint.verified', head.seq)
        return TopicValidatorResult.Accept
      } catch {
        return TopicValidatorResult.Reject
      }
    })
    pubsub.subscribe(this.topic)
    pubsub.addEventListener('gossipsub:message', this.onMessage as unknown as EventListener)
  }

  stop(): void {
    if (!this.started) return
    this.started = false
    const pubsub = this.init.ipfs.libp2p.services.pubsub
    pubsub.removeEventListener('gossipsub:message', this.onMessage as unknown as EventListener)
    pubsub.topicValidators.delete(this.topic)
  }

  /** Hints a new signed head of this node's own to the network (when hints are on). */
  publish(head: Uint8Array): void {
    if (!this.init.publishHints) return
    this.components.metrics.headsAnnounced.inc({ via: 'gossip' })
    void this.init.ipfs.libp2p.services.pubsub.publish(this.topic, head).catch((err: Error) => {
      this.components.log.debug(`gossip publish failed: ${err.message}`)
    })
  }
}
