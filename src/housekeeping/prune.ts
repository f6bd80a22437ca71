import type { Store } from '../store/store.ts'

/** What decides which own files may be pruned. */
export interface PruneRules {
  /** this node's peer id */
  self: string
  /** files younger than this (ms) stay */
  retention: number
  /** files older than this (ms) go whatever the acks; a member silent for longer no longer holds pruning back */
  retentionMax: number
  /** the members whose acks count; undefined means every producer this node knows */
  members: () => string[] | undefined
  /** the highest own seq that this node's plugins have processed */
  processed: () => number
}

/**
 * Finds the own files past the retention window that every member's acks cover (and this node's plugins
 * processed), or that passed the hard maximum age. Membership changes (`cairn.*` events) are never pruned.
 *
 * @returns the seqs that may go, and which members hold the others back
 */
export function prunable(store: Store, rules: PruneRules, now: number): { seqs: number[]; heldBackBy: string[] } {
  const { self, retention, retentionMax } = rules
  // Membership changes stay in the outbox for good: a node that joins later must find every one.
  const reserved = new Set(store.events.reservedSeqs(self))
  const candidates = store.outbox.unprunedBefore(now - retention).filter((c) => !reserved.has(c.seq))
  if (candidates.length === 0) return { seqs: [], heldBackBy: [] }
  const known = new Map(
    store.producers
      .all()
      .filter((r) => r.producer !== self)
      .map((r) => [r.producer, r])
  )
  const members = (rules.members() ?? [...known.keys()]).filter((m) => m !== self)
  let floor = Number.MAX_SAFE_INTEGER
  const acksOf = new Map<string, number>()
  for (const m of members) {
    const row = known.get(m)
    // A member silent for longer than the hard maximum no longer holds pruning back.
    if (row?.head_received_at != null && now - row.head_received_at > retentionMax) continue
    let ack = 0
    try {
      ack = Number((JSON.parse(row?.acks ?? '{}') as Record<string, number>)[self] ?? 0)
    } catch {}
    acksOf.set(m, ack)
    floor = Math.min(floor, ack)
  }
  const processed = rules.processed()
  const seqs = candidates.filter((c) => c.created_at < now - retentionMax || (c.seq <= floor && c.seq <= processed)).map((c) => c.seq)
  const kept = candidates.filter((c) => !seqs.includes(c.seq))
  const heldBackBy = kept.length === 0 ? [] : [...acksOf].filter(([, ack]) => ack < kept[0].seq).map(([m]) => m)
  return { seqs, heldBackBy }
}
