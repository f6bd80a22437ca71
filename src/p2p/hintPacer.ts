import type { CID } from 'multiformats/cid'
import { HINT_MAX_BLOCKS, HINT_MAX_BYTES } from '../model/head.ts'

interface Block {
  cid: CID
  bytes: Uint8Array
}

export interface HintPacerInit {
  /** the most hints sent per second */
  perSecond: number
  /** sends one hint: the newest signed head, with the blocks of the commits it covers that fit the hint's budget */
  send: (signed: Uint8Array, blocks: Block[]) => void
  now?: () => number
}

/**
 * Paces a node's own hints to at most `perSecond`. Receivers check heads per peer at a bounded rate
 * (`heads-per-second`) and, over it, keep only the newest head of each producer: the events are covered,
 * but the blocks the skipped hints carried are lost, and each walk fetched them over the network (at
 * 1,000 events/s, most of the receiver's latency). A head that comes within the interval of the last hint
 * waits for the interval's end and is replaced by any newer one; the hint then sent carries the blocks of
 * every commit since the last hint, newest first, whole commits only, within the hint's budget. A head
 * that comes after a quiet interval goes at once.
 */
export class HintPacer {
  private readonly init: HintPacerInit
  private readonly intervalMs: number
  private lastSent = Number.NEGATIVE_INFINITY
  /** the newest head held back, and the blocks of the commits since the last hint (oldest first) */
  private held?: { signed: Uint8Array; commits: Block[][]; bytes: number; blocks: number }
  private timer?: ReturnType<typeof setTimeout>

  constructor(init: HintPacerInit) {
    this.init = init
    this.intervalMs = 1000 / init.perSecond
  }

  /** Hints `signed` (a head newer than any pushed before) with `blocks`, its commit's new blocks: now, or at the interval's end. */
  push(signed: Uint8Array, blocks: readonly Block[]): void {
    const now = this.now()
    if (this.held == null && now - this.lastSent >= this.intervalMs) {
      this.sendNow(signed, [...blocks], now)
      return
    }
    const held = this.held ?? { signed, commits: [], bytes: 0, blocks: 0 }
    held.signed = signed
    held.commits.push([...blocks])
    held.bytes += blocks.reduce((n, b) => n + b.bytes.length, 0)
    held.blocks += blocks.length
    // Only the newest commits that fit the budget are ever sent: older ones are let go at once.
    while (held.commits.length > 1 && (held.bytes > HINT_MAX_BYTES || held.blocks > HINT_MAX_BLOCKS)) {
      const oldest = held.commits.shift()!
      held.bytes -= oldest.reduce((n, b) => n + b.bytes.length, 0)
      held.blocks -= oldest.length
    }
    this.held = held
    this.timer ??= setTimeout(
      () => {
        this.timer = undefined
        this.flush()
      },
      Math.max(0, this.lastSent + this.intervalMs - now)
    )
  }

  /** Sends the held hint now, if any (at stop, so that the last commit is hinted). */
  flush(): void {
    if (this.timer != null) clearTimeout(this.timer)
    this.timer = undefined
    const held = this.held
    if (held == null) return
    this.held = undefined
    const blocks: Block[] = []
    const seen = new Set<string>()
    let bytes = 0
    for (let i = held.commits.length - 1; i >= 0; i--) {
      const fresh = held.commits[i].filter((b) => !seen.has(b.cid.toString()))
      const size = fresh.reduce((n, b) => n + b.bytes.length, 0)
      if (bytes + size > HINT_MAX_BYTES || blocks.length + fresh.length > HINT_MAX_BLOCKS) break
      for (const b of fresh) {
        seen.add(b.cid.toString())
        blocks.push(b)
      }
      bytes += size
    }
    this.sendNow(held.signed, blocks, this.now())
  }

  private sendNow(signed: Uint8Array, blocks: Block[], now: number): void {
    this.lastSent = now
    this.init.send(signed, blocks)
  }

  private now(): number {
    return this.init.now?.() ?? performance.now()
  }
}
