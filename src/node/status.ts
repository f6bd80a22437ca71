import type { HeldGroup } from '../store/pluginState.ts'
import { formatMs, type ProducerAhead } from '../model/clockSkew.ts'
import type { Metrics } from '../metrics/metrics.ts'
import { BUILD, VERSION } from '../version.ts'
import { type HousekeepingResult, keptForClockText } from '../housekeeping/housekeeper.ts'
import type { Store } from '../store/store.ts'
import type { GapKind } from '../store/gaps.ts'
import type { RejectionSummary } from './rejections.ts'
import type { PluginStateStatus } from '../plugins/snapshots.ts'
import type { MembersDocument } from '../members/membership.ts'
import type { RefusingPeer } from '../members/ownEvents.ts'
import type { Divergence } from './events.ts'
import { type KeptAfterRemoval, keptAfterRemovalText } from '../model/members.ts'

/** One producer as this node sees it. */
export interface ProducerStatus {
  producer: string
  head_seq: number
  /** the highest seq up to which this node fetched and stored the producer's events, with no seq missing (lag_events counts from it) */
  processed_seq: number
  /**
   * the highest seq up to which the plugins processed them as they arrived (applied or dead-lettered: an event
   * retrying holds it back; a plugin added later backfilling, a rebuild or a replay do not): what this node's
   * heads acknowledge
   */
  applied_seq: number
  lag_events: number
  /** how long ago the newest head not yet fully processed arrived (0 when caught up) */
  lag_ms: number
  head_received_at: string | null
  last_error: string | null
  /** its lost gaps (an alarm; status lists the first STATUS_GAPS_PER_PRODUCER of them, `cairn gaps` all) */
  lost_gaps: number
  /**
   * for a removed member, the events this node holds after its last valid seq (taken before the removal
   * reached it, and applied: every other node refuses them); null otherwise
   */
  kept_after_removal: KeptAfterRemoval | null
}

/** Lost gaps of one producer that status lists: a member skipping every other seq has one per event. */
export const STATUS_GAPS_PER_PRODUCER = 20

/** A recorded gap as status and `cairn gaps` show it. */
export interface GapStatus {
  producer: string
  from_seq: number
  to_seq: number
  detected_at: string
  kind: GapKind
  /** how many seqs of the range are missing: all of them but in a range widened past GAPS_KEEP (store/gaps.ts) */
  missing: number
}

/** The part of the status that the database alone tells (a stopped node has this much). */
export interface StoredStatus {
  producers: ProducerStatus[]
  events: number
  /** events kept whose event_id another producer's event already had (an event is (producer, event_id)) */
  event_id_collisions: number
  outbox: { files: number; oldest_seq: number | null; last_seq: number; compacted_files: number }
  /**
   * lost gaps: events this node should have had that are gone and that nothing covers (an alarm): the first
   * STATUS_GAPS_PER_PRODUCER of each producer (its `lost_gaps` counts them all)
   */
  gaps: GapStatus[]
  /** lost gaps of every producer */
  gaps_total: number
  /**
   * information, not alarms: per producer whose history starts after seq 1, where it starts (what was pruned
   * before this node first heard of it), and the seqs its compaction removed as superseded
   */
  history: Array<{ producer: string; history_from_seq: number; compacted_seqs: number }>
  housekeeping: { last: HousekeepingResult | null; reclaimed_bytes: number }
  /**
   * backlog: events not yet processed by every plugin; retrying: (plugin, event) pairs waiting for a retry;
   * held: events of a version no plugin knows; held_by: which plugin holds which (type, version), and how many;
   * effects_failing: effects waiting for a retry after a failure; effects_given_up: effects that threw PermanentError;
   * dead_letters_by_plugin: per plugin with dead letters, how many (a plugin no longer loaded keeps its own)
   */
  plugins: {
    backlog: number
    retrying: number
    dead_letters: number
    dead_letters_by_plugin: Record<string, number>
    held: number
    held_by: HeldGroup[]
    effects_failing: number
    effects_given_up: number
  }
  quarantine: { count: number; by_reason: Record<string, number>; recent: Array<{ producer: string; path: string; reason: string; detail: string; detected_at: string }> }
}

/**
 * @returns what the database says of producers, outbox, gaps and quarantine; `coveredThrough(producer)` is
 * the seq up to which loaded snapshots cover that producer's lost gaps (they are no alarm then; 0 without):
 * Snapshots.coverage(), which reads the loaded vectors once
 */
export function storedStatus(store: Store, now = Date.now(), coveredThrough: (producer: string) => number = () => 0): StoredStatus {
  const gaps: GapStatus[] = []
  let gapsTotal = 0
  const acks = store.acks()
  const producers = store.producers.all().map((r) => {
    const lag = Math.max(0, r.head_seq - r.processed_seq)
    const lost = store.gaps.lostAfter(r.producer, coveredThrough(r.producer), STATUS_GAPS_PER_PRODUCER)
    gapsTotal += lost.count
    for (const g of lost.first) gaps.push({ ...g, detected_at: new Date(g.detected_at).toISOString() })
    return {
      producer: r.producer,
      head_seq: r.head_seq,
      processed_seq: r.processed_seq,
      applied_seq: acks[r.producer] ?? r.processed_seq,
      lag_events: lag,
      lag_ms: lag > 0 && r.head_received_at != null ? Math.max(0, now - r.head_received_at) : 0,
      head_received_at: r.head_received_at == null ? null : new Date(r.head_received_at).toISOString(),
      last_error: r.last_error,
      lost_gaps: lost.count,
      kept_after_removal: null
    }
  })
  const outbox = store.outbox.counts()
  const byReason = store.quarantine.countsByReason()
  const effects = store.pluginState.effectCounts()
  return {
    producers,
    events: store.events.count(),
    event_id_collisions: store.events.collisions(),
    outbox: { files: outbox.files, oldest_seq: outbox.oldestSeq, last_seq: outbox.lastSeq, compacted_files: store.outbox.compactedCount() },
    plugins: {
      backlog: store.events.pendingCount(),
      retrying: store.pluginState.retryingCount(),
      dead_letters: store.pluginState.deadLetterCount(),
      dead_letters_by_plugin: store.pluginState.deadLettersByPlugin(),
      held: store.pluginState.heldCount(),
      held_by: store.pluginState.heldBy(),
      effects_failing: effects.failing,
      effects_given_up: effects.gaveUp
    },
    housekeeping: {
      last: JSON.parse(store.meta.get('housekeeping') ?? 'null'),
      reclaimed_bytes: Number(store.meta.get('reclaimed_bytes') ?? 0)
    },
    gaps,
    gaps_total: gapsTotal,
    history: historyOf(store),
    quarantine: {
      count: Object.values(byReason).reduce((a, b) => a + b, 0),
      by_reason: byReason,
      recent: store.quarantine.recent(20).map((q) => ({ ...q, detected_at: new Date(q.detected_at).toISOString() }))
    }
  }
}

/** @returns a gap's range as status and the console show it, with how many of it are missing when not all (widened; an older node's status says nothing of it) */
export function gapRangeText(g: Pick<GapStatus, 'from_seq' | 'to_seq' | 'missing'>): string {
  const span = g.to_seq - g.from_seq + 1
  return `${g.from_seq}..${g.to_seq}${g.missing != null && g.missing < span ? ` (${g.missing} missing)` : ''}`
}

/** @returns the recorded gaps (of one kind, when given), as status and `cairn gaps` show them */
export function recordedGaps(store: Store, kind?: GapKind): GapStatus[] {
  return store.gaps.list(kind).map((g) => ({ ...g, detected_at: new Date(g.detected_at).toISOString() }))
}

/** @returns per producer with covered gaps, where its history starts here and how many seqs compaction removed */
export function historyOf(store: Store): StoredStatus['history'] {
  return store.gaps.covered().map((c) => ({ producer: c.producer, history_from_seq: c.horizon + 1, compacted_seqs: c.compacted }))
}

/** What the status document needs from a running node. */
export interface LiveStatus {
  ready: { ready: boolean; reason?: string }
  /** what the node cannot write (a full disk: its commits fail), each a reason that makes the verdict degraded */
  storage?: string[]
  lagAlert: number
  busRoot: string
  peerId: string
  network: string
  startedAt: number
  listen: string[]
  peers: string[]
  syncing: boolean
  rejections: RejectionSummary[]
  clock: ClockStatus
  /** per plugin, where its state comes from (the full or compacted log, a snapshot, the retention horizon) */
  pluginStates: PluginStateStatus[]
  members: MembersDocument
  /** the plugins this node runs: name, version, file (or built-in), per type the versions each reads, its tables */
  loadedPlugins: LoadedPluginStatus[]
  /** the head of this node's own producer that showed its history diverged (see 'self:diverged') */
  diverged?: Pick<Divergence, 'seq' | 'outbox_seq' | 'fork'>
  /**
   * members whose heads show they have not taken this node's latest events, though they take others'
   * (OwnEventsWatch); empty while this node knows it was removed or is no member, which a reason says already
   */
  refusedBy: RefusingPeer[]
}

/** A plugin the running node loaded, as `cairn status` and `cairn plugins` show it. */
export interface LoadedPluginStatus {
  name: string
  version?: string
  source: string
  /** per event type, the versions the plugin reads */
  types: Record<string, number[]>
  /** the tables its migrations create */
  tables: string[]
  /** `asked` or `running` while `cairn plugins rebuild` has a rebuild of its tables under way; absent when none */
  rebuild?: 'asked' | 'running'
}

/** This node's clock against others' (the clock rule, `--max-clock-skew`). */
export interface ClockStatus {
  max_skew_ms: number
  /** the network's time minus this node's clock; null before a head moved forward while this node watched */
  network_offset_ms: number | null
  /** why this node refuses to publish, when its clock is off from the network's */
  publish_refused: string | null
  /** producers whose heads or events are held for being stamped ahead, furthest first */
  producers_ahead: ProducerAhead[]
  /**
   * how far ahead of this node's clock it stamps its own events: more than --max-clock-skew once it went on from a
   * last head stamped that far ahead (its clock ran ahead and was set right since, or is behind now); 0 when not
   */
  stamps_ahead_ms: number
  /** what some producers say of this node's clock when too few agree for publishing to be refused; null when nothing */
  unsure: string | null
}

/** @returns what a node that stamps its events `aheadMs` ahead of its clock is to do, for its status and its log */
export function stampsAheadText(aheadMs: number, lastHlc?: string): string {
  return `this node stamps its events ${formatMs(aheadMs)} ahead of its clock${lastHlc == null ? '' : ` (its last head is stamped ${lastHlc})`}, more than --max-clock-skew: its timestamps never go back, and its peers hold what it stamps until their clocks reach that time. If its clock ran that far ahead and was set right since, stop it and run cairn reclock (docs/operations.md, "Clocks"); if its clock is behind now (set back, reset at boot), set it right`
}

/** The status document of `/status` and `cairn status --json`: the verdict with its reasons, then the details. */
export type StatusDocument = StoredStatus & {
  verdict: 'healthy' | 'degraded' | 'failing'
  reasons: string[]
  bus_root: string
  peer_id: string
  version: string
  /** the build of `version` the node runs (src/version.ts BUILD); absent from nodes of older builds */
  build?: string
  uptime_s: number
  listen: string[]
  peers: string[]
  network: string
  syncing: boolean
  /** per member or tracked producer and reason, rejections since start (bounded; most recent first) */
  rejections: RejectionSummary[]
  clock: ClockStatus
  plugin_state: PluginStateStatus[]
  /** who may write: owners, members, removed members (see cairn members list) */
  members: MembersDocument
  /**
   * members whose heads show they have not taken this node's events after `after_seq` for a while, though
   * they take others' (a removal of this node that it does not hold); empty when none, and while this node
   * knows it was removed or is no member (a reason says so then)
   */
  own_events_refused_by: RefusingPeer[]
  loaded_plugins: LoadedPluginStatus[]
}

/** @returns what a head of this node's own producer ahead of its outbox, or forked from it, means, for the log, status and a refused publish */
export function divergenceText(d: Pick<Divergence, 'seq' | 'outbox_seq' | 'fork'>): string {
  if (d.fork != null) {
    return `a peer holds this node's own head whose file at seq ${d.seq} is ${d.fork.file}, not the ${d.fork.own} this node published there: its identity runs on another node too (a copied data directory, or a backup started beside the original), which publishes other events under the same seqs, and every peer keeps whichever it saw first`
  }
  return `a peer holds this node's own head at seq ${d.seq}, but its outbox ends at seq ${d.outbox_seq}: its cairn.db is behind what it published (restored from an older backup?) or its identity runs on another node too, and every peer would refuse the seqs it reused`
}

/**
 * @returns what members' heads that acknowledge none of this node's events past some seq mean, for the log
 * line and the status reason
 */
export function ownEventsRefusedText(refusing: readonly RefusingPeer[], self: string): string {
  const who = refusing.map((p) => `${p.peer_id} after seq ${p.after_seq} (since ${p.since})`).join(', ')
  return `members have not taken this node's events past a seq for a while, though they take others': ${who}. They refuse them: they hold a removal of this node that this node does not hold (an owner removed it while cut off from it, or two owners removed each other), or cannot take them (see their cairn status); its publishes are answered 201 but reach none of them. An owner adds it again (cairn members add ${self}), or the owners settle their conflict (see docs/operations.md, "Members")`
}

/** @returns the status document of a running node */
export function statusDocument(live: LiveStatus, stored: StoredStatus): StatusDocument {
  const reasons: string[] = []
  if (!live.ready.ready) reasons.push(live.ready.reason ?? 'not ready')
  reasons.push(...(live.storage ?? []))
  const lagging = stored.producers.filter((p) => p.lag_ms > live.lagAlert)
  if (lagging.length > 0) reasons.push(`lag over ${live.lagAlert} ms for ${lagging.map((p) => p.producer).join(', ')}`)
  if (stored.gaps_total > 0) reasons.push(`${stored.gaps_total} gap(s): events no longer fetchable`)
  if (live.clock.publish_refused != null) reasons.push(`publishing refused: ${live.clock.publish_refused}`)
  if (live.clock.unsure != null) reasons.push(`clock unsure: ${live.clock.unsure}`)
  if (live.clock.stamps_ahead_ms > live.clock.max_skew_ms) reasons.push(stampsAheadText(live.clock.stamps_ahead_ms))
  if (live.clock.producers_ahead.length > 0) reasons.push(`clock ahead, held: ${live.clock.producers_ahead.map((p) => `${p.producer} by ${Math.round(p.ahead_ms / 1000)} s`).join(', ')}`)
  // Until a run lets them go: the last run's result stays in cairn.db.
  const kept = stored.housekeeping.last?.kept_for_clock
  if (kept != null) reasons.push(keptForClockText(kept))
  for (const p of live.pluginStates) if (p.disagreement != null) reasons.push(`plugin ${p.plugin}: ${p.disagreement}`)
  // A plugin removed from --plugins keeps its dead letters: nothing runs them, and cairn replay refuses to, until a start loads it again.
  const loaded = new Set(live.loadedPlugins.map((p) => p.name))
  const unloaded = Object.entries(stored.plugins.dead_letters_by_plugin).filter(([plugin]) => !loaded.has(plugin))
  const ofLoaded = stored.plugins.dead_letters - unloaded.reduce((n, [, count]) => n + count, 0)
  if (ofLoaded > 0) reasons.push(`${ofLoaded} dead letter(s): see cairn dead`)
  for (const [plugin, count] of unloaded) {
    reasons.push(
      `${count} dead letter(s) of plugin ${plugin}, which this node has not loaded: nothing can replay them until it runs with ${plugin} again (see docs/plugins.md, "Removing or renaming a plugin")`
    )
  }
  if (live.diverged != null) reasons.push(`${divergenceText(live.diverged)}; publishing is refused`)
  for (const p of stored.producers) {
    const r = p.kept_after_removal == null ? undefined : live.members.removed.find((r) => r.peer_id === p.producer)
    if (p.kept_after_removal != null && r != null) reasons.push(keptAfterRemovalText(p.producer, p.kept_after_removal, r))
  }
  const removed = live.members.removed.find((r) => r.peer_id === live.peerId)
  if (removed != null) {
    reasons.push(
      `this node was removed by ${removed.removed_by}: other nodes refuse its events after seq ${removed.last_seq}, and it refuses publishes (409 removed_member); an owner adds it again (cairn members add ${live.peerId}) for it to publish`
    )
  } else if (live.members.source === 'changes' && !live.members.members.some((m) => m.self))
    reasons.push(`this node is not a member: other nodes refuse its events; an owner adds it (cairn members add ${live.peerId})`)
  if (live.refusedBy.length > 0) reasons.push(ownEventsRefusedText(live.refusedBy, live.peerId))
  for (const h of stored.plugins.held_by)
    reasons.push(`plugin ${h.plugin} holds ${h.count} ${h.type} v${h.version} event(s): it reads older versions only; load a version of it that reads v${h.version}`)
  return {
    verdict: !live.ready.ready ? 'failing' : reasons.length > 0 ? 'degraded' : 'healthy',
    reasons,
    bus_root: live.busRoot,
    peer_id: live.peerId,
    version: VERSION,
    build: BUILD,
    uptime_s: Math.round((Date.now() - live.startedAt) / 1000),
    listen: live.listen,
    peers: live.peers,
    network: live.network,
    syncing: live.syncing,
    rejections: live.rejections,
    clock: live.clock,
    plugin_state: live.pluginStates,
    members: live.members,
    own_events_refused_by: live.refusedBy,
    loaded_plugins: live.loadedPlugins,
    ...stored
  }
}

/** Sets the gauges that mirror the database and the swarm, just before a scrape. */
export function refreshMetrics(metrics: Metrics, stored: StoredStatus, peers: number, lagAlert: number, clock: ClockStatus, refusedBy: number): void {
  metrics.peers.set(peers)
  metrics.ownEventsRefused.set(refusedBy)
  metrics.keptAfterRemoval.reset()
  for (const p of stored.producers) if (p.kept_after_removal != null) metrics.keptAfterRemoval.set({ producer: p.producer }, p.kept_after_removal.count)
  metrics.clockAhead.reset()
  for (const p of clock.producers_ahead) metrics.clockAhead.set({ producer: p.producer }, p.ahead_ms / 1000)
  metrics.clockOffset.set((clock.network_offset_ms ?? 0) / 1000)
  metrics.stampsAhead.set(clock.stamps_ahead_ms / 1000)
  metrics.lagEvents.reset()
  metrics.lagSeconds.reset()
  for (const p of stored.producers) {
    metrics.lagEvents.set({ producer: p.producer }, p.lag_events)
    metrics.lagSeconds.set({ producer: p.producer }, p.lag_ms / 1000)
  }
  metrics.lagAlert.set(stored.producers.some((p) => p.lag_ms > lagAlert) ? 1 : 0)
  metrics.gaps.set(stored.gaps_total)
  metrics.gapsCovered.set({ kind: 'horizon' }, stored.history.filter((h) => h.history_from_seq > 1).length)
  metrics.gapsCovered.set(
    { kind: 'compacted' },
    stored.history.reduce((n, h) => n + h.compacted_seqs, 0)
  )
  metrics.quarantined.set(stored.quarantine.count)
  metrics.outboxFiles.set(stored.outbox.files)
  metrics.deadLetters.set(stored.plugins.dead_letters)
  metrics.effectsFailing.set(stored.plugins.effects_failing)
  metrics.effectsGivenUp.set(stored.plugins.effects_given_up)
  metrics.backlog.set(stored.plugins.backlog)
}
