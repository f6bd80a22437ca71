import { TopicValidatorResult } from '@libp2p/gossipsub'
import type { Components } from '../node/components.ts'
import { trace } from '../log/trace.ts'
import { hintMessage, verifyHeadMessage, type VerifiedHead } from '../model/head.ts'
import type { CID } from 'multiformats/cid'
import { HINT_EVENTS, HINT_HOLD_MS, HintPacer } from './hintPacer.ts'
import type { HeadLimiter } from './headLimiter.ts'
import type { CairnIpfs } from './ipfs.ts'

export interface HeadGossipInit {
  ipfs: CairnIpfs
  /** the network id: names the topic */
  network: string
  /** admits a hint before its signature is checked, per sending peer and producer, and is told which moved its producer forward */
  limiter: HeadLimiter
  /** whether this node publishes its own new heads as hints (it always receives them) */
  publishHints: boolean
  /** the most hints of its own this node sends per second (HintPacer) */
  hintsPerSecond: number
  /**
   * judges a verified hint: relay it only when its head is news from a member this node tracks or may
   * track; otherwise `reason` (for a refusal) or nothing (an old head)
   */
  screen: (message: VerifiedHead) => { relay: true } | { relay: false; reason?: string; detail?: string }
  /**
   * applies each hint that the validator accepted, with the peer that sent it (never throws): its producer
   * when the head moved that producer forward, which gives the peer's credit back (HeadLimiter.useful)
   */
  onHint: (bytes: Uint8Array, peer: string) => Promise<string | undefined>
  /** told when a hint of this node's own reached no peer (none known to be subscribed yet, as right after a start) */
  onUnheard?: () => void
}

export type HeadGossipComponents = Pick<Components, 'log' | 'metrics' | 'events'>

/** @returns the gossipsub topic on which a network's new heads are hinted */
export function headsTopic(network: string): string {
  return `cairn/${network}/heads`
}

/**
 * Hints of new heads over gossipsub. A hint is a head its producer signed (with, when small, the blocks of
 * its commit); gossip only says "there is something new", the producer's directory stays the source of
 * truth. Before gossipsub relays a hint, once the sending peer's rate limit lets it through, the validator
 * checks its size and carried-block budget (Ignore when over), its signature and blocks (Reject when bad:
 * the sender is penalised) and whether it is news (Ignore for an old head, a non-member's, or one producer
 * too many): only a hint that moves a member's head forward, or one that came out of order but is still
 * ahead of what this node processed, travels on. The check's result is reused when the hint is applied.
 */
export class HeadGossip {
  private readonly init: HeadGossipInit
  private readonly components: HeadGossipComponents
  readonly topic: string
  private started = false
  private readonly pacer: HintPacer
  private readonly onMessage = (evt: CustomEvent<{ msg: { topic: string; data: Uint8Array }; propagationSource: { toString: () => string } }>): void => {
    const { msg, propagationSource } = evt.detail
    if (msg.topic !== this.topic) return
    const from = propagationSource.toString()
    // Only the copy that moved its producer forward gives the credit back: copies of one new head validated
    // at once were all news to the validator, which writes nothing.
    void this.init.onHint(msg.data, from).then((producer) => {
      this.init.limiter.useful(msg.data, from, producer)
    })
  }

  constructor(init: HeadGossipInit, components: HeadGossipComponents) {
    this.init = init
    this.components = components
    this.topic = headsTopic(init.network)
    this.pacer = new HintPacer({
      perSecond: init.hintsPerSecond,
      holdMs: HINT_HOLD_MS,
      events: HINT_EVENTS,
      send: (signed, blocks) => {
        this.components.metrics.headsAnnounced.inc({ via: 'gossip' })
        this.init.ipfs.libp2p.services.pubsub.publish(this.topic, hintMessage(signed, blocks)).then(
          (r) => {
            if (r.recipients.length === 0) this.init.onUnheard?.()
          },
          (err: Error) => {
            this.components.log.debug(`gossip publish failed: ${err.message}`, { reason: 'gossip_publish_failed' })
          }
        )
      }
    })
  }

  start(): void {
    if (this.started) return
    this.started = true
    const pubsub = this.init.ipfs.libp2p.services.pubsub
    pubsub.topicValidators.set(this.topic, async (peer, msg) => {
      trace('hint.validating')
      const from = peer.toString()
      if (!(await this.init.limiter.admit(msg.data, from))) return TopicValidatorResult.Ignore
      const { metrics, events } = this.components
      let message: VerifiedHead
      try {
        message = await verifyHeadMessage(msg.data)
      } catch (err) {
        const reason = (err as { reason?: string }).reason ?? 'bad_head'
        metrics.headsReceived.inc({ result: 'rejected' })
        events.safeDispatchEvent('peer:rejected', { detail: { reason, detail: `gossip hint: ${(err as Error).message}`, peer: from } })
        // Size and budget are not the producer's signature at fault: not relayed, and not penalised.
        return reason === 'oversized_head' || reason === 'oversized_hint' ? TopicValidatorResult.Ignore : TopicValidatorResult.Reject
      }
      trace('hint.verified', message.head.seq)
      const screened = this.init.screen(message)
      // A hint relayed gives its credit back once applied, if it moved its producer forward (onMessage).
      if (screened.relay) return TopicValidatorResult.Accept
      this.init.limiter.useful(msg.data, from, undefined)
      if (screened.reason == null) {
        metrics.headsReceived.inc({ result: 'old' })
      } else {
        metrics.headsReceived.inc({ result: 'rejected' })
        events.safeDispatchEvent('peer:rejected', { detail: { reason: screened.reason, detail: `gossip hint: ${screened.detail ?? ''}`, peer: from, producer: message.head.producer } })
      }
      return TopicValidatorResult.Ignore
    })
    pubsub.subscribe(this.topic)
    pubsub.addEventListener('gossipsub:message', this.onMessage as unknown as EventListener)
  }

  stop(): void {
    if (!this.started) return
    // The last commit's hint goes out before the topic is left.
    this.pacer.flush()
    this.started = false
    const pubsub = this.init.ipfs.libp2p.services.pubsub
    pubsub.removeEventListener('gossipsub:message', this.onMessage as unknown as EventListener)
    pubsub.topicValidators.delete(this.topic)
  }

  /**
   * Hints a new signed head of this node's own to the network (when hints are on), with `blocks`, the new
   * blocks of its commit, and `events`, how many events the commit added, paced by HintPacer. A hint
   * gossipsub has seen already (an unchanged head) is not sent again (ipfs.ts sets
   * ignoreDuplicatePublishError); a publish that fails is a log line, never thrown. Outside start() and stop()
   * nothing is sent or held: a head re-signed after stop (a refresh or a snapshot that was under way) would
   * otherwise be hinted, or held on a timer, while libp2p stops.
   */
  publish(signed: Uint8Array, blocks: ReadonlyArray<{ cid: CID; bytes: Uint8Array }> = [], events = 0): void {
    if (!this.init.publishHints || !this.started) return
    this.pacer.push(signed, blocks, events)
  }
}
