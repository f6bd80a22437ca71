/** The most producers whose clock is followed; beyond it the one seen longest ago is forgotten. */
const MAX_TRACKED = 256

/** A sample of the network's time counts this long; a producer held for its clock is shown this long. */
const SAMPLE_TTL_MS = 10 * 60_000

/** Producers that must agree that this node's clock is off before it refuses to stamp: one liar is not enough. */
const MIN_AGREEING = 2

/** A producer whose heads or events are stamped further ahead than max-clock-skew. */
export interface ProducerAhead {
  producer: string
  /** how far ahead of this node's clock its latest held timestamp was */
  ahead_ms: number
  /** when this node last held one of its timestamps (ISO 8601) */
  seen_at: string
}

/** This node's clock against the network's, from the heads it watched move forward. */
export interface NetworkTime {
  /** the median over producers of (their latest head's hlc − this node's clock when it arrived) */
  offset_ms: number
  /** how many producers' heads it is taken from */
  producers: number
}

/**
 * What the node knows about other clocks: the producers stamping ahead of this node's clock by more than
 * max-clock-skew (held, reported), and the network's time learnt from heads that moved forward while
 * this node watched (a head that was already old when it arrived says nothing about its producer's clock).
 * Both tables are bounded by MAX_TRACKED, whoever sends.
 */
export class ClockWatch {
  private readonly now: () => number
  private readonly maxSkewMs: number
  private readonly ahead = new Map<string, { aheadMs: number; seenAt: number }>()
  /** per producer: the head seq last seen, and the offsets of the latest two heads seen to move forward */
  private readonly heads = new Map<string, { seq: number; offsetMs?: number; previousMs?: number; at: number }>()

  constructor(now: () => number, maxSkewMs: number) {
    this.now = now
    this.maxSkewMs = maxSkewMs
  }

  /** Records that `producer` stamped something `aheadMs` ahead of this node's clock. */
  held(producer: string, aheadMs: number): void {
    this.ahead.delete(producer)
    this.ahead.set(producer, { aheadMs, seenAt: this.now() })
    bound(this.ahead)
  }

  /** Forgets that `producer` was held: its timestamp was taken once this clock caught up. */
  released(producer: string): void {
    this.ahead.delete(producer)
  }

  /** @returns the producers held for their clock in the last ten minutes, furthest ahead first */
  producersAhead(): ProducerAhead[] {
    const since = this.now() - SAMPLE_TTL_MS
    return [...this.ahead.entries()]
      .filter(([, a]) => a.seenAt >= since)
      .map(([producer, a]) => ({ producer, ahead_ms: a.aheadMs, seen_at: new Date(a.seenAt).toISOString() }))
      .sort((a, b) => b.ahead_ms - a.ahead_ms)
  }

  /**
   * Takes a head that moved its producer forward as a sample of the network's time, but only when this
   * node had already seen an earlier head of that producer: the move happened while it watched.
   */
  sample(producer: string, seq: number, hlcMs: number): void {
    const now = this.now()
    const prev = this.heads.get(producer)
    this.heads.delete(producer)
    const live = prev != null && seq > prev.seq
    this.heads.set(producer, {
      seq: Math.max(seq, prev?.seq ?? 0),
      offsetMs: live ? hlcMs - now : prev?.offsetMs,
      previousMs: live ? prev?.offsetMs : prev?.previousMs,
      at: live || prev == null ? now : prev.at
    })
    bound(this.heads)
  }

  /** @returns the network's time against this node's clock, or undefined without a recent sample */
  networkTime(): NetworkTime | undefined {
    const offsets = this.offsets()
    if (offsets.length === 0) return undefined
    return { offset_ms: offsets[Math.floor((offsets.length - 1) / 2)], producers: offsets.length }
  }

  /**
   * @returns why this node must not stamp events now: more than half of the producers it watched recently,
   * and at least two, put its clock further than max-clock-skew from theirs; undefined when it may. A head
   * stamped ahead of this clock says so at once (it cannot arrive before it was stamped), beyond the half of the
   * skew that any member may drag every node's stamps by; one stamped behind
   * may only be late (the first after a partition was stamped before it arrived, by as long as the partition
   * lasted, whatever the clocks), so a producer puts this clock ahead only when its last two heads seen to move
   * forward both do.
   */
  stampRefusal(): string | undefined {
    const recent = this.recent()
    const offsets = recent.map((h) => h.offsetMs!).sort((a, b) => a - b)
    const behind = offsets.filter((o) => this.beyond(o) && o > 0).length
    const ahead = recent.filter((h) => h.offsetMs! < -this.maxSkewMs && h.previousMs != null && h.previousMs < -this.maxSkewMs).length
    const agree = (n: number): boolean => n >= MIN_AGREEING && n * 2 > offsets.length
    if (!agree(behind) && !agree(ahead)) return undefined
    const median = offsets[Math.floor((offsets.length - 1) / 2)]
    return `this node's clock is ${formatMs(Math.abs(median))} ${median < 0 ? 'ahead of' : 'behind'} the network's (the median of ${offsets.length} producer(s)' latest heads), more than --max-clock-skew ${formatMs(this.maxSkewMs)}; set the system clock right (NTP)`
  }

  /**
   * @returns what to say when some producers watched recently put this node's clock further than max-clock-skew from
   * theirs and too few of them agree for stampRefusal to tell whose clock is off (fewer than two, or not more than
   * half of them, while no majority of at least two puts it within the skew); undefined otherwise. With one or two
   * other producers, this is all a node can know of its own clock being off. A producer counts only when its last two
   * heads seen to move forward both put this clock off, on the same side: the first head after a partition was
   * stamped before it arrived, by as long as the partition lasted, whatever the clocks.
   */
  unsure(): string | undefined {
    if (this.stampRefusal() != null) return undefined
    const recent = this.recent()
    const beyond = (o: number | undefined): boolean => o != null && this.beyond(o)
    const within = recent.filter((h) => !beyond(h.offsetMs)).length
    const off = recent.filter((h) => beyond(h.offsetMs) && beyond(h.previousMs) && Math.sign(h.offsetMs!) === Math.sign(h.previousMs!)).map((h) => h.offsetMs!)
    if (off.length === 0 || (within >= MIN_AGREEING && within * 2 > recent.length)) return undefined
    const furthest = off.reduce((a, b) => (Math.abs(b) > Math.abs(a) ? b : a))
    return `${off.length} of ${recent.length} producer(s) watched put this node's clock up to ${formatMs(Math.abs(furthest))} ${furthest < 0 ? 'ahead of' : 'behind'} theirs, more than --max-clock-skew ${formatMs(this.maxSkewMs)}; too few agree to tell whose clock is off (it takes at least two, and more than half), so this node still publishes: check its clock and theirs (NTP)`
  }

  /**
   * @returns whether a head's offset puts this clock further than max-clock-skew from its producer's. Stamped ahead,
   * it may be dragged: every node follows a stamp up to half the skew ahead of its clock (HybridClock.observe), so one
   * member stamping that far ahead moves every honest stamp with it, and only a stamp further ahead than the skew and
   * that half puts this clock more than the skew behind.
   */
  private beyond(offsetMs: number): boolean {
    return offsetMs < -this.maxSkewMs || offsetMs > this.maxSkewMs * 1.5
  }

  /** @returns the producers whose head moved forward lately while this node watched */
  private recent(): Array<{ offsetMs?: number; previousMs?: number }> {
    const since = this.now() - SAMPLE_TTL_MS
    return [...this.heads.values()].filter((h) => h.offsetMs != null && h.at >= since)
  }

  private offsets(): number[] {
    return this.recent()
      .map((h) => h.offsetMs!)
      .sort((a, b) => a - b)
  }
}

/** Drops the entries seen longest ago (first inserted) beyond MAX_TRACKED. */
function bound(map: Map<string, unknown>): void {
  for (const key of map.keys()) {
    if (map.size <= MAX_TRACKED) return
    map.delete(key)
  }
}

/** @returns a duration for a person: 90 s, 3.2 h, 365.0 d */
export function formatMs(ms: number): string {
  if (ms < 120_000) return `${Math.round(ms / 1000)} s`
  if (ms < 2 * 3_600_000) return `${(ms / 60_000).toFixed(1)} min`
  if (ms < 2 * 86_400_000) return `${(ms / 3_600_000).toFixed(1)} h`
  return `${(ms / 86_400_000).toFixed(1)} d`
}
