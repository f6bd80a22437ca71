import { hlcMs } from '../model/hlc.ts'
import type { Store } from '../store/store.ts'
import type { PruneTime } from './clock.ts'

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
 * The most hour buckets one run compacts files out of, so that one run's tree change stays small. A
 * reader's walk re-reads every directory a compaction changed; the head counts the files compacted
 * (`compacted`), and each widens the reader's walk budget by its path, however many runs it missed.
 */
export const COMPACT_BUCKETS_PER_RUN = 256

/** Which own files a housekeeping run may prune, and why the others stay. */
export interface Prunable {
  /** every seq that may go */
  seqs: number[]
  /** those of `seqs` that go because newer events superseded every key they write (compaction) */
  compacted: Set<number>
  /** members whose acks hold back plain files */
  heldBackBy: string[]
}

/**
 * Finds the own files past the retention window that may go. A file whose event writes state keys (keyed
 * compaction, docs/plugins.md) goes once every key it writes has a newer event, from any producer, whatever
 * the acks and however old: the newest event of a key is kept for as long as the key exists, and a member
 * that lags gets the newer one instead. Any other file (a type no plugin declares keys for) keeps plain
 * retention: it goes once every member's acks cover it and this node's plugins processed it, or once it
 * passed the hard maximum age. Membership changes (`cairn.*` events) are never pruned.
 *
 * Two clocks (housekeeping/clock.ts): a file that every member acknowledged and this node's plugins
 * processed goes past `retention` by the wall clock, as nobody misses it; whatever goes without that — past
 * `retention-max`, by compaction, or because a member silent for `retention-max` no longer counts — is aged
 * on the guarded clock, which a wall clock set ahead does not move.
 */
export function prunable(store: Store, rules: PruneRules, now: PruneTime): Prunable {
  const { self, retention, retentionMax } = rules
  const { wall, guarded } = now
  // Membership changes stay in the outbox for good: a node that joins later must find every one.
  const reserved = new Set(store.events.reservedSeqs(self))
  const candidates = store.outbox.unprunedBefore(wall - retention).filter((c) => !reserved.has(c.seq))
  if (candidates.length === 0) return { seqs: [], compacted: new Set(), heldBackBy: [] }
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
    if (row?.head_received_at != null && guarded - row.head_received_at > retentionMax) continue
    let ack = 0
    try {
      ack = Number((JSON.parse(row?.acks ?? '{}') as Record<string, number>)[self] ?? 0)
    } catch {}
    acksOf.set(m, ack)
    floor = Math.min(floor, ack)
  }
  const processed = rules.processed()
  // Keys are recorded when this node's plugins apply the event: an own event not processed yet is judged as plain.
  const keyed = candidates.filter((c) => c.seq <= processed && store.stateKeys.keyed(self, c.seq))
  const keyedSeqs = new Set(keyed.map((c) => c.seq))
  const superseded = store.stateKeys.superseded(
    self,
    keyed.map((c) => c.seq)
  )
  const acked = (c: { seq: number }): boolean => c.seq <= floor && c.seq <= processed
  const older = (c: { created_at: number }, age: number): boolean => c.created_at < guarded - age
  const compacted = new Set<number>()
  const keyedGo = new Set<number>()
  const buckets = new Set<string>()
  for (const c of keyed) {
    if (!superseded.has(c.seq)) continue
    // A plugin without keys for the type also applied it: its state needs the event as plain retention does
    // (acknowledged, or past retention-max).
    const unkeyed = store.stateKeys.unkeyed(self, c.seq)
    if (!acked(c) && !older(c, unkeyed ? retentionMax : retention)) continue
    if (!buckets.has(c.bucket) && buckets.size >= COMPACT_BUCKETS_PER_RUN) continue
    buckets.add(c.bucket)
    keyedGo.add(c.seq)
    if (!unkeyed) compacted.add(c.seq)
  }
  const plain = candidates.filter((c) => !keyedSeqs.has(c.seq))
  const plainGo = new Set(plain.filter((c) => acked(c) || older(c, retentionMax)).map((c) => c.seq))
  const kept = plain.filter((c) => !plainGo.has(c.seq))
  const heldBackBy = kept.length === 0 ? [] : [...acksOf].filter(([, ack]) => ack < kept[0].seq).map(([m]) => m)
  const seqs = candidates.filter((c) => keyedGo.has(c.seq) || plainGo.has(c.seq)).map((c) => c.seq)
  return { seqs, compacted, heldBackBy }
}

/**
 * The time members' heads show: the newest that two members' heads reach (their hlc, as stamped by their
 * producers), or the only member's when there is one. One member alone cannot move the guarded clock where
 * others are members too (it may lie: its head is stored when it is stamped at most --max-clock-skew ahead of
 * this node's clock, and so says nothing against a wall clock set ahead); a member that has not been heard
 * from shows no time.
 *
 * @returns that time (ms), or undefined when the members' heads show none
 */
export function membersTime(store: Store, rules: Pick<PruneRules, 'self' | 'members'>): number | undefined {
  const rows = store.producers.all().filter((r) => r.producer !== rules.self)
  const members = new Set(rules.members() ?? rows.map((r) => r.producer))
  members.delete(rules.self)
  const times = rows
    .filter((r) => members.has(r.producer) && r.head_hlc != null)
    .map((r) => hlcMs(r.head_hlc!))
    .filter((t): t is number => t != null)
    .sort((a, b) => b - a)
  const agreeing = Math.min(2, members.size)
  return agreeing === 0 || times.length < agreeing ? undefined : times[agreeing - 1]
}
