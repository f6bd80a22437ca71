import type { Components } from './components.ts'

/** A peer's rejections of one reason are logged at most once in this long; every one is counted. */
const LOG_EVERY_MS = 60_000
/** Peers and reasons remembered for that; the oldest are forgotten beyond it. */
const MAX_REMEMBERED = 4096

/**
 * Counts every 'peer:rejected' in `cairn_rejected_total` and logs it, once a minute per peer and reason,
 * so that a peer sending garbage cannot flood the log.
 *
 * @returns a function that stops listening
 */
export function logRejections(components: Pick<Components, 'events' | 'log' | 'metrics'>): () => void {
  const logged = new Map<string, number>()
  return components.events.listen('peer:rejected', ({ reason, detail, peer }) => {
    components.metrics.rejected.inc({ reason })
    const key = `${peer} ${reason}`
    const now = Date.now()
    if ((logged.get(key) ?? 0) + LOG_EVERY_MS > now) return
    logged.delete(key)
    logged.set(key, now)
    if (logged.size > MAX_REMEMBERED) logged.delete(logged.keys().next().value!)
    components.log.warn(`rejected (${reason}): ${detail}`, { peer, reason })
  })
}
