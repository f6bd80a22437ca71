/** Heads a peer may have waiting for a token, one per producer. */
const MAX_WAITING = 1024

interface Bucket {
  tokens: number
  at: number
  /** producer → the newest head waiting for a token, and how to tell it whether it got one */
  waiting: Map<string, { seq: number; admit: (ok: boolean) => void }>
  timer?: ReturnType<typeof setTimeout>
}

export interface HeadLimiterInit {
  /** heads per peer per second that are checked at once; also the burst */
  rate: number
  /** checks and applies one head (for offer()) */
  accept: (bytes: Uint8Array, peer: string) => Promise<void>
  /** a waiting head replaced by a newer one of the same producer: nothing is lost, the newer head covers it */
  onCoalesced?: () => void
  /** a head refused outright: unreadable while over the rate, or too many producers waiting */
  onDropped: (peer: string, detail: string) => void
}

/**
 * Rate-limits heads per sending peer with a token bucket, without delaying honest traffic by much:
 * a head over the rate waits for the next token instead of being dropped, and only the newest waiting
 * head per producer is kept, because a head covers everything before it. A flooding peer so costs at
 * most `rate` signature checks per second, while a busy producer's events are late by at most 1/rate s.
 */
export class HeadLimiter {
  private readonly init: HeadLimiterInit
  private readonly buckets = new Map<string, Bucket>()

  constructor(init: HeadLimiterInit) {
    this.init = init
  }

  /** Admits a head, then checks and applies it (init.accept); one over the rate waits without holding up the caller. */
  async offer(bytes: Uint8Array, peer: string): Promise<void> {
    const admitted = this.admit(bytes, peer)
    if (admitted instanceof Promise) {
      void admitted.then(async (ok) => {
        if (ok) await this.init.accept(bytes, peer)
      })
      return
    }
    if (admitted) await this.init.accept(bytes, peer)
  }

  /**
   * Takes a token for a head before its signature is checked (the gossip validator calls this).
   *
   * @returns true at once when a token is free; false at once for a head refused outright or older than
   * the one waiting; else a promise: true when its token comes, false when a newer head of the same
   * producer replaced it (or the limiter stopped)
   */
  admit(bytes: Uint8Array, peer: string): boolean | Promise<boolean> {
    const b = this.bucket(peer)
    if (b.waiting.size === 0 && b.tokens >= 1) {
      b.tokens--
      return true
    }
    const claim = claimOf(bytes)
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
      b.waiting.set(claim.producer, { seq: claim.seq, admit: resolve })
      this.schedule(peer, b)
    })
  }

  stop(): void {
    for (const b of this.buckets.values()) {
      clearTimeout(b.timer)
      for (const w of b.waiting.values()) w.admit(false)
    }
    this.buckets.clear()
  }

  private bucket(peer: string): Bucket {
    const now = performance.now()
    let b = this.buckets.get(peer)
    if (b == null) {
      b = { tokens: this.init.rate, at: now, waiting: new Map() }
      this.buckets.set(peer, b)
      if (this.buckets.size > 10_000) this.forgetIdle()
    }
    b.tokens = Math.min(this.init.rate, b.tokens + ((now - b.at) * this.init.rate) / 1000)
    b.at = now
    return b
  }

  private schedule(peer: string, b: Bucket): void {
    if (b.timer != null) return
    const wait = Math.max(1, Math.ceil(((1 - b.tokens) * 1000) / this.init.rate))
    b.timer = setTimeout(() => {
      b.timer = undefined
      this.bucket(peer)
      for (const [producer, w] of b.waiting) {
        if (b.tokens < 1) break
        b.tokens--
        b.waiting.delete(producer)
        w.admit(true)
      }
      if (b.waiting.size > 0) this.schedule(peer, b)
    }, wait)
  }

  private forgetIdle(): void {
    for (const [peer, b] of this.buckets) if (b.waiting.size === 0 && b.tokens >= this.init.rate) this.buckets.delete(peer)
  }
}

/** The producer and seq a head claims, read without checking it (that happens when it is accepted). */
function claimOf(bytes: Uint8Array): { producer: string; seq: number } | undefined {
  try {
    const head = (JSON.parse(new TextDecoder().decode(bytes)) as { head?: { producer?: unknown; seq?: unknown } }).head
    if (typeof head?.producer === 'string' && head.producer.length <= 128 && typeof head.seq === 'number') return { producer: head.producer, seq: head.seq }
  } catch {}
  return undefined
}
