import type { CID } from 'multiformats/cid'
import { verifyHeadMessage, type Head } from '../model/head.ts'
import { InvalidHeadError } from '../errors.ts'
import type { Components } from '../node/components.ts'

/** Who may send heads, and where the blocks a head message carried go. */
export interface HeadIntakeInit {
  /** whose heads are accepted; undefined accepts every holder of the swarm key */
  isMember?: (producer: string) => boolean
  /** stores blocks a head message carried (already checked against their CIDs) */
  storeBlocks?: (blocks: Array<{ cid: CID; bytes: Uint8Array }>) => void
}

/** What head intake reads and writes. */
export type HeadIntakeComponents = Pick<Components, 'self' | 'store' | 'clock' | 'metrics' | 'events'>

/**
 * Verifies a signed head and, when it moves its producer's head forward, persists it, counts it and
 * dispatches 'head:accepted'. Heads of this node itself are never news.
 *
 * @returns the head when it is news, undefined when it changed nothing
 * @throws InvalidHeadError when it does not verify or is from a non-member
 */
export async function intakeHead(bytes: Uint8Array, init: HeadIntakeInit, components: HeadIntakeComponents): Promise<Head | undefined> {
  const { head, signed, blocks } = await verifyHeadMessage(bytes)
  if (head.producer === components.self) return undefined
  if (init.isMember != null && !init.isMember(head.producer)) {
    throw new InvalidHeadError('not_member', `Cannot accept head of ${head.producer}: it is not in the members list`)
  }
  // The clock rule (model/hlc.ts hold): a head stamped too far ahead is not stored and does not move
  // this node's clock; its producer re-announces it, and it is taken once this clock has caught up.
  const held = components.clock.hold(head.producer, head.hlc)
  if (held != null) throw new InvalidHeadError('clock_skew', `Cannot accept head ${head.seq} of ${held}`)
  // Blocks carried by the hint spare the round trips; unreferenced ones are garbage-collected. They
  // are kept even when the head is old (hints arrive out of order): a peer that walks to that head
  // may ask this node for them.
  if (blocks.length > 0) init.storeBlocks?.(blocks)
  const known = components.store.producers.get(head.producer)
  if (known != null && (head.seq < known.head_seq || (known.head_hlc != null && head.hlc <= known.head_hlc))) return undefined
  components.clock.observe(head.hlc)
  components.clock.watch.sample(head.producer, head.seq, Number(head.hlc.slice(0, 13)))
  components.store.producers.putHead({ producer: head.producer, seq: head.seq, root: head.root, hlc: head.hlc, acks: head.acks, signed, receivedAt: Date.now() })
  components.metrics.headsReceived.inc({ result: 'new' })
  components.events.safeDispatchEvent('head:accepted', { detail: head })
  return head
}
