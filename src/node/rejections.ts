import type { Log } from '../log/logger.ts'
import { clip } from '../util/clip.ts'
import type { Components } from './components.ts'

/** A peer's rejections of one reason are logged at most once in this long; every one is counted. */
const LOG_EVERY_MS = 60_000
/** Peers and reasons remembered for that; the oldest are forgotten beyond it. */
const MAX_REMEMBERED = 4096
/** (producer, reason) pairs the status document lists; the least recent are forgotten beyond it. */
const MAX_LISTED = 256

/** One line of the status document's `rejections`: how often a member's heads, hints or files were rejected, and why. */
export interface RejectionSummary {
  producer: string
  reason: string
  count: number
  /** ISO time of the last one */
  last_at: string
}

export interface RejectionLogInit {
  /**
   * whether `producer` is a member or a producer this node tracks: only those get a series and a status
   * line of their own, so their number is bounded by the members list or --max-producers
   */
  isKnown: (producer: string) => boolean
}

/**
 * Counts every 'peer:rejected' in `cairn_rejected_total`, and for a known member (the producer it names,
 * else the peer that sent it) in `cairn_rejected_by_producer_total` and the status document; logs it once a
 * minute per peer and reason, so that a peer sending garbage cannot flood the log.
 */
export class RejectionLog {
  private readonly logged = new Map<string, number>()
  /** `${producer} ${reason}` → summary, least recent first */
  private readonly byProducer = new Map<string, RejectionSummary>()
  private readonly stopListening: () => void

  constructor(init: RejectionLogInit, components: Pick<Components, 'events' | 'log' | 'metrics'>) {
    this.stopListening = components.events.listen('peer:rejected', ({ reason, detail, peer, producer }) => {
      components.metrics.rejected.inc({ reason })
      const who = producer ?? peer
      if (init.isKnown(who)) this.count(who, reason, components.metrics)
      this.log(components.log, peer, reason, detail, producer)
    })
  }

  /** @returns per known producer and reason, how many were rejected and when last, most recent first */
  list(): RejectionSummary[] {
    return [...this.byProducer.values()].reverse()
  }

  stop(): void {
    this.stopListening()
  }

  private count(producer: string, reason: string, metrics: Components['metrics']): void {
    metrics.rejectedByProducer.inc({ reason, producer })
    const key = `${producer} ${reason}`
    const prev = this.byProducer.get(key)
    this.byProducer.delete(key)
    this.byProducer.set(key, { producer, reason, count: (prev?.count ?? 0) + 1, last_at: new Date().toISOString() })
    if (this.byProducer.size > MAX_LISTED) this.byProducer.delete(this.byProducer.keys().next().value!)
  }

  private log(log: Log, peer: string, reason: string, detail: string, producer?: string): void {
    const key = `${peer} ${reason}`
    const now = Date.now()
    if ((this.logged.get(key) ?? 0) + LOG_EVERY_MS > now) return
    this.logged.delete(key)
    this.logged.set(key, now)
    if (this.logged.size > MAX_REMEMBERED) this.logged.delete(this.logged.keys().next().value!)
    // The detail may quote what the peer sent (a name up to a block's size): a log line keeps its start.
    log.warn(`rejected (${reason}): ${clip(detail)}`, producer == null ? { peer, reason } : { peer, reason, producer })
  }
}

/**
 * Turns a rejected promise that nothing handled (a library's `void publish()`, say) into one structured
 * error line with reason `unhandled_rejection`, instead of the runtime's stack dump.
 *
 * @returns a function that stops listening
 */
export function logUnhandledRejections(log: Log): () => void {
  const onRejection = (reason: unknown): void => {
    const err = reason instanceof Error ? reason : new Error(String(reason))
    log.error(`unhandled rejection: ${err.message}`, { reason: 'unhandled_rejection', error: err.name, stack: err.stack })
  }
  process.on('unhandledRejection', onRejection)
  return () => {
    process.off('unhandledRejection', onRejection)
  }
}
