import type { CID } from 'multiformats/cid'
import { verifyHeadMessage, type Head, type VerifiedHead } from '../model/head.ts'
import { InvalidHeadError } from '../errors.ts'
import type { Components } from '../node/components.ts'
import type { ProducerRow } from '../store/producers.ts'
import type { Store } from '../store/store.ts'

/** Who may send heads, how many producers are tracked, and where the blocks a head message carried go. */
export interface HeadIntakeInit {
  /** whose heads are accepted; undefined (or a function answering undefined: no list) accepts every holder of the swarm key */
  isMember?: (producer: string) => boolean | undefined
  /** for a removed member, the last seq of its that is valid: its heads are taken only while events up to it are missing */
  removedAt?: (producer: string) => { last_seq: number; removed_by: string } | undefined
  /** without a members list, the most producers tracked; heads of further producers are refused */
  maxProducers?: number
  /**
   * receives the blocks a new or late head's message carried (already checked against their CIDs), to
   * hold in memory only: they are stored when a walk of an accepted root reaches them, never before
   */
  keepBlocks?: (blocks: Array<{ cid: CID; bytes: Uint8Array }>) => void
  /** receives the blocks an old head's message carried: only those a walk is waiting for may be used */
  offerBlocks?: (blocks: Array<{ cid: CID; bytes: Uint8Array }>) => void
  /**
   * receives a head of this node's own producer at a seq its outbox has, with the blocks its message
   * carried: another copy of this node may have published a different file under that seq (sync/forkCheck.ts)
   */
  ownHead?: (head: Head, blocks: Array<{ cid: CID; bytes: Uint8Array }>) => void
}

/** What head intake reads and writes. */
export type HeadIntakeComponents = Pick<Components, 'self' | 'store' | 'clock' | 'metrics' | 'events'>

/**
 * What a verified head is to this node: news; late (older than the head it has, newer than what it
 * processed: the walk to come still needs the files of its commit); nothing new; or refused (with the
 * reason's metric label).
 */
export type HeadVerdict = { verdict: 'new' } | { verdict: 'late' } | { verdict: 'old' } | { verdict: 'refused'; reason: string; detail: string }

/** A producer's row as read to judge a head, and `producers.writes` when it was read. */
export interface SeenRow {
  row: ProducerRow | undefined
  writes: number
}

/** @returns `seen` while no write to `producers` came after it (it is still the row), else the row read now */
export function producerRow(store: Pick<Store, 'producers'>, producer: string, seen?: SeenRow): SeenRow {
  const writes = store.producers.writes
  if (seen != null && seen.writes === writes) return seen
  return { row: store.producers.get(producer), writes }
}

/**
 * Judges a verified head without changing anything: the gossip validator relays what this returns 'new'
 * or 'late' for (hints of one producer can arrive out of order, and a late one carries blocks that the
 * nodes after this one need as much as this one does), and intake persists only 'new' heads.
 */
export function judgeHead(
  head: Head,
  init: HeadIntakeInit,
  components: Pick<Components, 'self' | 'store'>,
  row: (producer: string) => ProducerRow | undefined = (p) => components.store.producers.get(p)
): HeadVerdict {
  if (head.producer === components.self) return { verdict: 'old' }
  const removed = init.removedAt?.(head.producer)
  const member = removed == null ? init.isMember?.(head.producer) : true
  if (member === false) {
    return { verdict: 'refused', reason: 'not_member', detail: `Cannot accept head of ${head.producer}: it is not in the members list` }
  }
  const known = row(head.producer)
  // A removed member's head is taken only while this node still misses some of its valid events (seq <= last_seq).
  if (removed != null && (known?.processed_seq ?? 0) >= removed.last_seq) {
    return { verdict: 'refused', reason: 'not_member', detail: `Cannot accept head of ${head.producer}: ${removed.removed_by} removed it; its events after seq ${removed.last_seq} are refused` }
  }
  if (known == null) {
    if (member == null && init.maxProducers != null && components.store.producers.count() >= init.maxProducers) {
      return {
        verdict: 'refused',
        reason: 'too_many_producers',
        detail: `Cannot accept head of ${head.producer}: this node already tracks ${init.maxProducers} producers (--max-producers; a members list lifts the cap)`
      }
    }
    return { verdict: 'new' }
  }
  if (head.seq < known.head_seq || (known.head_hlc != null && head.hlc <= known.head_hlc)) {
    return head.seq < known.head_seq && head.seq > known.processed_seq ? { verdict: 'late' } : { verdict: 'old' }
  }
  return { verdict: 'new' }
}

/**
 * Verifies a signed head and, when it moves its producer's head forward, persists it, counts it and
 * dispatches 'head:accepted'. Heads of this node itself are never news. Blocks the message carried are
 * never written here: a new or late head's go to memory for the walk (which stores those its root
 * reaches), an old head's only to a walk already waiting for them. `seen` may give the producer's row as
 * the gossip validator read it to judge this very message: it is used while no write to `producers` came
 * since, and the membership is asked again in any case.
 *
 * @returns the head when it is news, undefined when it changed nothing
 * @throws InvalidHeadError when it does not verify, is from a non-member, or from one producer too many
 */
export async function intakeHead(bytes: Uint8Array, init: HeadIntakeInit, components: HeadIntakeComponents, seen?: (message: VerifiedHead) => SeenRow | undefined): Promise<Head | undefined> {
  const message = await verifyHeadMessage(bytes)
  const { head, signed, blocks } = message
  if (head.producer === components.self) {
    // Its seqs only grow with its outbox's rows, which are never deleted: one ahead of them is a history this
    // database does not have.
    const outboxSeq = components.store.outbox.lastSeq()
    if (head.seq > outboxSeq) components.events.safeDispatchEvent('self:diverged', { detail: { seq: head.seq, root: head.root.toString(), outbox_seq: outboxSeq } })
    else init.ownHead?.(head, blocks)
  }
  const judged = judgeHead(head, init, components, (p) => producerRow(components.store, p, seen?.(message)).row)
  if (judged.verdict === 'refused') throw new InvalidHeadError(judged.reason, judged.detail, head.producer)
  if (judged.verdict === 'late') {
    // The newer head is stored already; the walk to it reads this commit's files, and gets them from here.
    if (blocks.length > 0) init.keepBlocks?.(blocks)
    return undefined
  }
  if (judged.verdict === 'old') {
    if (blocks.length > 0 && head.producer !== components.self) init.offerBlocks?.(blocks)
    return undefined
  }
  // The clock rule (model/hlc.ts hold): a head stamped too far ahead is not stored and does not move
  // this node's clock; its producer re-announces it, and it is taken once this clock has caught up.
  const held = components.clock.hold(head.producer, head.hlc)
  // A held head is a sample of the network's time too: stamped ahead, it cannot have been stamped after it arrived,
  // so it is the proof that this clock is behind that ClockWatch.stampRefusal counts (taken heads never are).
  components.clock.watch.sample(head.producer, head.seq, Number(head.hlc.slice(0, 13)))
  if (held != null) throw new InvalidHeadError('clock_skew', `Cannot accept head ${head.seq} of ${held}`, head.producer)
  components.clock.watch.released(head.producer)
  components.clock.observe(head.hlc)
  components.store.producers.putHead({
    producer: head.producer,
    seq: head.seq,
    root: head.root,
    hlc: head.hlc,
    acks: head.acks,
    signed,
    receivedAt: Date.now(),
    prunedPlain: head.pruned_plain,
    compacted: head.compacted
  })
  if (blocks.length > 0) init.keepBlocks?.(blocks)
  components.metrics.headsReceived.inc({ result: 'new' })
  components.events.safeDispatchEvent('head:accepted', { detail: head })
  return head
}
