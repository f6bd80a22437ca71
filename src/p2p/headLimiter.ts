/** Heads a peer may have waiting for a token, one per producer. */
const MAX_WAITING = 1024
/** Producers a peer's budget tracks at once; those with a full bucket (idle for a second) are forgotten first. */
const MAX_PRODUCERS = 4096
/**
 * How many producers' worth of heads (`rate` each) one peer may have checked a second in all, news or not:
 * a hub relaying four producers at their full hint pace (`hints-per-second`, 100, each at hundreds of events
 * a second), or dozens at tens of events a second, passes; a peer minting producers (no members list)
 * costs at most this many times `rate` checks, walks included.
 */
export const PEER_FACTOR = 4
/**
 * A head takes a credit per this many bytes (at least one, at most `rate`): checking a head costs its parse
 * and its carried blocks' hashes as well as a signature, and a hostile 256 KiB one (deep nesting) costs a
 * parse of ~10 ms, so the credit for heads that prove no news bounds their bytes too. An honest hint is a few
 * KiB (at most ~130 with its blocks) and gets its credit back once it is news.
 */
export const CREDIT_BYTES = 16 * 1024

interface Tokens {
  tokens: number
  at: number
}

interface Budget {
  /**
   * heads this peer may have checked before they are known to be news: each head admitted takes one, and
   * one that proved news (useful()) gives it back, so this bounds the checks of heads that are not
   */
  credit: Tokens
  /** every head this peer may have checked, at PEER_FACTOR × rate: the cap on news from many producers */
  total: Tokens
  /** per producer a head claims: how many of its heads this peer may have checked */
  producers: Map<string, Tokens>
  /** producer → the newest head waiting for a token, and how to tell it whether it got one */
  waiting: Map<string, { seq: number; weight: number; admit: (ok: boolean) => void }>
  timer?: ReturnType<typeof setTimeout>
}

export interface HeadLimiterInit {
  /** heads checked per second per sending peer and producer, and per sending peer of heads that prove no news (PEER_FACTOR times it of all heads); also the bursts */
  rate: number
  /** checks and applies one head (for offer()): the producer whose head it was, when it was news */
  accept: (bytes: Uint8Array, peer: string) => Promise<string | undefined>
  /** a waiting head replaced by a newer one of the same producer: nothing is lost, the newer head covers it */
  onCoalesced?: () => void
  /** a head refused outright: unreadable while over the rate, or too many producers waiting */
  onDropped: (peer: string, detail: string) => void
}

/**
 * Rate-limits the heads each peer sends, before their signatures are checked, without delaying honest
 * traffic by much. Three budgets, token buckets of `rate` per second but the last:
 *
 * - per (peer, producer the head claims): a busy producer's heads relayed by one peer pass at up to `rate`,
 *   whatever other producers that peer relays (a hub in a star of busy producers relays them all), and a
 *   member flooding signed heads of its own costs at most `rate` checks per second per peer;
 * - per peer, a credit for heads not yet known to be news: each admitted head takes one (one per CREDIT_BYTES), and gets it back
 *   once it proves news (a valid head that moved its claimed producer forward, useful()). Heads that do not
 *   (forged, replayed, of strangers) so cost at most `rate` checks per second per peer, however many
 *   producers they claim;
 * - per peer, every head, at PEER_FACTOR × `rate`: news of producers minted for the purpose (without a
 *   members list anyone with the swarm key makes as many as `max-producers` allows) costs at most that.
 *
 * A head over any budget waits for the next token instead of being dropped, and only the newest waiting
 * head per producer is kept, because a head covers everything before it.
 */
export class HeadLimiter {
  private readonly init: HeadLimiterInit
  private readonly budgets = new Map<string, Budget>()
  /** the producer each admitted head claimed, until useful() settles it: a head gives its credit back once */
  private readonly claims = new WeakMap<Uint8Array, { producer: string; weight: number }>()
  /** after stop() nothing is admitted: gossip and the head exchange still deliver heads while the node stops */
  private stopped = false

  constructor(init: HeadLimiterInit) {
    this.init = init
  }

  /** Admits a head, then checks and applies it (init.accept); one over the rate waits without holding up the caller. */
  async offer(bytes: Uint8Array, peer: string): Promise<void> {
    const admitted = this.admit(bytes, peer)
    if (admitted instanceof Promise) {
      void admitted.then(async (ok) => {
        if (ok) this.useful(bytes, peer, await this.init.accept(bytes, peer))
      })
      return
    }
    if (admitted) this.useful(bytes, peer, await this.init.accept(bytes, peer))
  }

  /**
   * Takes tokens for a head before its signature is checked (the gossip validator calls this, and useful()
   * once the head proved news).
   *
   * @returns true at once when its tokens are free; false at once for a head refused outright or older than
   * the one waiting; else a promise: true when its tokens come, false when a newer head of the same
   * producer replaced it (or the limiter stopped); false at once after stop()
   */
  admit(bytes: Uint8Array, peer: string): boolean | Promise<boolean> {
    if (this.stopped) return false
    const b = this.budget(peer)
    const claim = claimOf(bytes)
    const producer = claim?.producer ?? ''
    const weight = Math.min(this.init.rate, Math.max(1, Math.ceil(bytes.length / CREDIT_BYTES)))
    // A head whose producer has one waiting waits too, so that the waiting one is never passed over by a newer.
    if (!b.waiting.has(producer) && this.take(b, producer, weight)) {
      this.claims.set(bytes, { producer, weight })
      return true
    }
    if (claim == null) {
      this.init.onDropped(peer, `an unreadable head over the rate of ${this.init.rate} per second`)
      return false
    }
    const prev = b.waiting.get(claim.producer)
    if (prev != null) {
      this.init.onCoalesced?.()
      if (prev.seq > claim.seq) return false
      prev.admit(false)
    } else if (b.waiting.size >= MAX_WAITING) {
      this.init.onDropped(peer, `more than ${MAX_WAITING} producers' heads waiting over the rate of ${this.init.rate} per second`)
      return false
    }
    return new Promise<boolean>((resolve) => {
      b.waiting.set(claim.producer, {
        seq: claim.seq,
        weight,
        admit: (ok) => {
          if (ok) this.claims.set(bytes, { producer, weight })
          resolve(ok)
        }
      })
      this.schedule(peer, b)
    })
  }

  /**
   * Gives back the credit an admitted head took, when it proved news: `producer` is the producer of its
   * verified head that moved forward (undefined: it was not news), and must be the one the head claimed.
   */
  useful(bytes: Uint8Array, peer: string, producer: string | undefined): void {
    const claimed = this.claims.get(bytes)
    if (claimed == null) return
    this.claims.delete(bytes)
    if (producer == null || producer !== claimed.producer) return
    const b = this.budgets.get(peer)
    if (b != null) b.credit.tokens = Math.min(this.init.rate, b.credit.tokens + claimed.weight)
  }

  stop(): void {
    this.stopped = true
    for (const b of this.budgets.values()) {
      clearTimeout(b.timer)
      for (const w of b.waiting.values()) w.admit(false)
    }
    this.budgets.clear()
  }

  /** Takes `weight` credits, a token of the peer's total and one of `producer` when all are free. */
  private take(b: Budget, producer: string, weight: number): boolean {
    const now = performance.now()
    this.refill(b.credit, now)
    if (b.credit.tokens < weight) return false
    this.refill(b.total, now, PEER_FACTOR)
    if (b.total.tokens < 1) return false
    let p = b.producers.get(producer)
    if (p == null) {
      if (b.producers.size >= MAX_PRODUCERS) this.forgetFull(b, now)
      if (b.producers.size >= MAX_PRODUCERS) return false
      p = { tokens: this.init.rate, at: now }
      b.producers.set(producer, p)
    }
    this.refill(p, now)
    if (p.tokens < 1) return false
    p.tokens--
    b.credit.tokens -= weight
    b.total.tokens--
    return true
  }

  private refill(t: Tokens, now: number, factor = 1): void {
    const rate = this.init.rate * factor
    t.tokens = Math.min(rate, t.tokens + ((now - t.at) * rate) / 1000)
    t.at = now
  }

  /** Forgets the producers whose bucket is full again: a full bucket is what a new one starts with. */
  private forgetFull(b: Budget, now: number): void {
    for (const [producer, t] of b.producers) {
      this.refill(t, now)
      if (t.tokens >= this.init.rate && !b.waiting.has(producer)) b.producers.delete(producer)
    }
  }

  private budget(peer: string): Budget {
    let b = this.budgets.get(peer)
    if (b == null) {
      const now = performance.now()
      b = { credit: { tokens: this.init.rate, at: now }, total: { tokens: PEER_FACTOR * this.init.rate, at: now }, producers: new Map(), waiting: new Map() }
      this.budgets.set(peer, b)
      if (this.budgets.size > 10_000) this.forgetIdle()
    }
    return b
  }

  private schedule(peer: string, b: Budget): void {
    if (b.timer != null) return
    const wait = Math.max(1, Math.ceil(1000 / this.init.rate))
    b.timer = setTimeout(() => {
      b.timer = undefined
      for (const [producer, w] of b.waiting) {
        if (!this.take(b, producer, w.weight)) {
          if (b.credit.tokens < 1 || b.total.tokens < 1) break
          continue
        }
        b.waiting.delete(producer)
        w.admit(true)
      }
      if (b.waiting.size > 0) this.schedule(peer, b)
    }, wait)
  }

  private forgetIdle(): void {
    const now = performance.now()
    for (const [peer, b] of this.budgets) {
      if (b.waiting.size > 0) continue
      this.refill(b.credit, now)
      this.refill(b.total, now, PEER_FACTOR)
      if (b.credit.tokens < this.init.rate || b.total.tokens < PEER_FACTOR * this.init.rate) continue
      this.forgetFull(b, now)
      if (b.producers.size === 0) this.budgets.delete(peer)
    }
  }
}

/**
 * The largest message whose claim is parsed whole when the canonical bytes do not give it: every message is
 * read for its claim before it takes a token, and a parse of hostile JSON (deep nesting) costs about 10 ms a
 * 256 KiB, while one of this size costs about what a signature check does.
 */
export const CLAIM_PARSE_BYTES = 4096
const PRODUCER = Buffer.from('"producer":"')
const SEQ = Buffer.from('"seq":')
const QUOTE = 0x22

/**
 * The producer and seq a head claims, read without checking it (that happens when it is accepted). A head
 * cairn signed is canonical JSON whose first `"producer":"` is the head's producer (the keys before it are
 * acks, whose keys are peer ids, compacted and hlc) and whose next `"seq":` is its seq, so those two are
 * found in the bytes without parsing; anything else is parsed whole up to CLAIM_PARSE_BYTES, and claims nothing
 * when larger (it shares its peer's budget of unreadable heads). A claim is only a claim: useful() gives
 * credit back only for the producer the signature proved.
 */
export function claimOf(bytes: Uint8Array): { producer: string; seq: number } | undefined {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const at = buf.indexOf(PRODUCER)
  if (at >= 0) {
    const start = at + PRODUCER.length
    const end = buf.indexOf(QUOTE, start)
    const s = end > start && end - start <= 128 ? buf.indexOf(SEQ, end) : -1
    if (s >= 0) {
      let seq = 0
      let i = s + SEQ.length
      const first = i
      for (; i < buf.length && i - first < 16 && buf[i] >= 0x30 && buf[i] <= 0x39; i++) seq = seq * 10 + (buf[i] - 0x30)
      if (i > first) return { producer: buf.toString('latin1', start, end), seq }
    }
  }
  if (bytes.length > CLAIM_PARSE_BYTES) return undefined
  try {
    const head = (JSON.parse(new TextDecoder().decode(bytes)) as { head?: { producer?: unknown; seq?: unknown } }).head
    if (typeof head?.producer === 'string' && head.producer.length <= 128 && typeof head.seq === 'number') return { producer: head.producer, seq: head.seq }
  } catch {}
  return undefined
}
