/** A member whose heads show that it has not taken this node's events after `after_seq`, though it takes others'. */
export interface RefusingPeer {
  peer_id: string
  /** the last seq of this node's own events its heads acknowledge */
  after_seq: number
  /** when this node first saw one of its heads acknowledge no more than that while this node had published more */
  since: string
}

/** What the watch reads of the node. */
export interface OwnEventsWatchInit {
  self: string
  /**
   * how long a member's heads may acknowledge no more of this node's events while they acknowledge more of
   * others': the node's max(lag-alert, 3 × announce-interval), so a member that is merely slow (whose
   * acknowledgement moves, however slowly) never counts, and one that moves at all has sent heads within it
   */
  afterMs: number
  /** this node's last own seq */
  lastSeq: () => number
  /** whether `peer`'s heads count: a member whose heads this node accepts (not removed, not this node) */
  counts: (peer: string) => boolean
  /** whether a producer's acknowledgement in a member's head shows that member moving: a member or a removed member */
  known: (producer: string) => boolean
  now?: () => number
  /** a monotonic clock in ms (default performance.now) */
  monotonic?: () => number
}

/** A member whose acknowledgement of this node's events stands still. */
interface Stall {
  /** its acknowledgement of this node's events */
  ack: number
  /** when a head of it first acknowledged `ack` while this node's last seq was beyond (wall clock, for display) */
  since: number
  /** the same on the monotonic clock, which the wait is measured on (a step of the wall clock moves nothing) */
  sinceMono: number
  /** the sum of its acknowledgements of other known producers in that head (acknowledgements only grow) */
  base: number
  /** whether a later head acknowledged more of some other known producer */
  moved: boolean
  /** whether it counts as refusing (logged once) */
  refused: boolean
}

/** What a head changed: a member that refuses this node's events now, or one that takes them again. */
export type RefusalChange = { change: 'refused'; peer: RefusingPeer } | { change: 'taken'; peer: RefusingPeer }

/**
 * Tells from the heads this node accepts whether members refuse its own events: every head carries its
 * producer's acknowledgement (`acks`) of each producer's events, and a member that keeps signing heads that
 * acknowledge more of others' events but none of this node's past some seq, for longer than `afterMs`, does
 * not take them: it holds a removal of this node that this node does not hold (two owners that removed each
 * other while cut off), or cannot take them. Such a member can never be told apart from one that refuses
 * on purpose; that is the point, since either way this node's publishes reach it no more.
 *
 * What it keeps is bounded by the members (what the owners decide, not what peers send): one entry per
 * member whose acknowledgement stands below this node's last seq, each with the acknowledgements of the
 * members and removed members. Heads of non-members are never accepted, a removed member's refusal is
 * no news (this node does not take its events either), and a node without peers sees no heads.
 *
 * @example
 * ```ts
 * const watch = new OwnEventsWatch({ self, afterMs: 15_000, lastSeq, counts, known })
 * events.listen('head:accepted', (head) => watch.observe(head.producer, head.acks))
 * watch.refusing() // the members that have not taken this node's latest events
 * ```
 */
export class OwnEventsWatch {
  private readonly init: OwnEventsWatchInit
  private readonly now: () => number
  private readonly monotonic: () => number
  /** per member whose heads acknowledge less than this node's last seq (bounded by the members) */
  private readonly stalls = new Map<string, Stall>()

  constructor(init: OwnEventsWatchInit) {
    this.init = init
    this.now = init.now ?? Date.now
    this.monotonic = init.monotonic ?? init.now ?? (() => performance.now())
  }

  /**
   * Reads the acknowledgements of a head of `peer` that this node accepted.
   *
   * @returns the change this head makes: `peer` refuses this node's events from now on, or takes them again
   */
  observe(peer: string, acks: Record<string, number>): RefusalChange | undefined {
    const { self, counts, lastSeq, afterMs } = this.init
    const stall = this.stalls.get(peer)
    // A member that is one no more (removed) is dropped without a word: its refusal is no news.
    if (peer === self || !counts(peer)) {
      this.stalls.delete(peer)
      return undefined
    }
    const ack = acks[self] ?? 0
    if (!Number.isSafeInteger(ack) || ack >= lastSeq()) {
      this.stalls.delete(peer)
      return stall?.refused === true ? { change: 'taken', peer: view(peer, stall) } : undefined
    }
    const mono = this.monotonic()
    if (stall == null || stall.ack !== ack) {
      this.stalls.set(peer, { ack, since: this.now(), sinceMono: mono, base: this.othersOf(peer, acks), moved: false, refused: false })
      return stall?.refused === true ? { change: 'taken', peer: view(peer, stall) } : undefined
    }
    stall.moved ||= this.othersOf(peer, acks) > stall.base
    if (stall.refused || !stall.moved || mono - stall.sinceMono < afterMs) return undefined
    stall.refused = true
    return { change: 'refused', peer: view(peer, stall) }
  }

  /** @returns the members that refuse this node's events now (those that are still members), by peer id */
  refusing(): RefusingPeer[] {
    for (const peer of this.stalls.keys()) if (!this.init.counts(peer)) this.stalls.delete(peer)
    return [...this.stalls]
      .filter(([, s]) => s.refused)
      .map(([peer, s]) => view(peer, s))
      .sort((a, b) => (a.peer_id < b.peer_id ? -1 : 1))
  }

  /**
   * @returns the sum of a head's acknowledgements of the known producers other than this node and the head's
   * own: a sum that grew means some acknowledgement grew (they only grow), at one pass and no allocation
   */
  private othersOf(peer: string, acks: Record<string, number>): number {
    let sum = 0
    for (const producer in acks) {
      const seq = acks[producer]
      if (producer !== this.init.self && producer !== peer && Number.isSafeInteger(seq) && seq > 0 && this.init.known(producer)) sum += seq
    }
    return sum
  }
}

function view(peer: string, s: Stall): RefusingPeer {
  return { peer_id: peer, after_seq: s.ack, since: new Date(s.since).toISOString() }
}
