import { Counter, Gauge, Histogram, Registry } from 'prom-client'

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

/**
 * cairn's Prometheus series, all prefixed `cairn_`, in a registry of their own (no global state).
 * Gauges that mirror the database are refreshed by `refresh` just before each scrape.
 */
export class Metrics {
  readonly registry = new Registry()
  readonly published = new Counter({ name: 'cairn_events_published_total', help: 'Events this node published', labelNames: ['type'], registers: [this.registry] })
  readonly ingested = new Counter({ name: 'cairn_events_ingested_total', help: 'Events added to the events table (own and fetched)', labelNames: ['type'], registers: [this.registry] })
  readonly applied = new Counter({ name: 'cairn_events_applied_total', help: 'Events a plugin applied', labelNames: ['type', 'plugin'], registers: [this.registry] })
  readonly propagation = new Histogram({
    name: 'cairn_propagation_seconds',
    help: "From an event's occurred_at to its arrival in the events table",
    buckets: LATENCY_BUCKETS,
    registers: [this.registry]
  })
  readonly applyDuration = new Histogram({ name: 'cairn_apply_duration_seconds', help: "Time a plugin's apply took", labelNames: ['plugin'], buckets: LATENCY_BUCKETS, registers: [this.registry] })
  readonly lagEvents = new Gauge({ name: 'cairn_producer_lag_events', help: "Events a producer's head is ahead of what this node processed", labelNames: ['producer'], registers: [this.registry] })
  readonly lagSeconds = new Gauge({ name: 'cairn_producer_lag_seconds', help: 'How long the newest unprocessed head of a producer has waited', labelNames: ['producer'], registers: [this.registry] })
  readonly lagAlert = new Gauge({ name: 'cairn_lag_alert', help: "1 when some producer's lag is over --lag-alert", registers: [this.registry] })
  readonly peers = new Gauge({ name: 'cairn_peers', help: 'Connected peers', registers: [this.registry] })
  readonly headsReceived = new Counter({ name: 'cairn_heads_received_total', help: 'Heads received, by result', labelNames: ['result'], registers: [this.registry] })
  readonly ownHeadsChecked = new Counter({
    name: 'cairn_own_heads_checked_total',
    help: "Heads of this node's own producer with a root it does not hold, checked for another copy's file at their seq, by result (same, forked, no_verdict)",
    labelNames: ['result'],
    registers: [this.registry]
  })
  readonly gossipReceived = new Counter({
    name: 'cairn_gossip_received_total',
    help: 'Gossip messages received, every copy, by topic (hints, peers)',
    labelNames: ['topic'],
    registers: [this.registry]
  })
  readonly gossipDuplicates = new Counter({
    name: 'cairn_gossip_duplicates_total',
    help: 'Gossip messages received that were copies of one already seen, by topic: copies per message = received / (received - duplicates)',
    labelNames: ['topic'],
    registers: [this.registry]
  })
  readonly headsAnnounced = new Counter({ name: 'cairn_heads_announced_total', help: 'Heads announced or re-announced to peers', labelNames: ['via'], registers: [this.registry] })
  readonly rejected = new Counter({ name: 'cairn_rejected_total', help: 'Heads, files and requests rejected, by reason', labelNames: ['reason'], registers: [this.registry] })
  readonly rejectedByProducer = new Counter({
    name: 'cairn_rejected_by_producer_total',
    help: 'Rejections attributed to a member or tracked producer (the producer a signed tree names, else the peer that sent it), by reason',
    labelNames: ['reason', 'producer'],
    registers: [this.registry]
  })
  readonly deadLetters = new Gauge({ name: 'cairn_dead_letters', help: 'Dead-lettered (plugin, event) pairs', registers: [this.registry] })
  readonly effectsFailing = new Gauge({ name: 'cairn_effects_failing', help: "Plugins' effects waiting for a retry after a failure", registers: [this.registry] })
  readonly effectsGivenUp = new Gauge({ name: 'cairn_effects_given_up', help: "Plugins' effects given up: they threw PermanentError", registers: [this.registry] })
  readonly gaps = new Gauge({ name: 'cairn_gaps', help: 'Lost gaps: seq ranges pruned before this node got them that neither compaction nor its join covers (an alarm)', registers: [this.registry] })
  readonly gapsCovered = new Gauge({
    name: 'cairn_gaps_covered',
    help: "Seq ranges missing from producers' trees that are no alarm, by kind: compacted (superseded by newer events) or horizon (pruned before this node joined)",
    labelNames: ['kind'],
    registers: [this.registry]
  })
  readonly compacted = new Counter({ name: 'cairn_compacted_files_total', help: 'Own event files pruned because newer events superseded every state key they write', registers: [this.registry] })
  readonly quarantined = new Gauge({ name: 'cairn_quarantined_files', help: 'Files in quarantine', registers: [this.registry] })
  readonly outboxFiles = new Gauge({ name: 'cairn_outbox_files', help: "Event files in this node's outbox", registers: [this.registry] })
  readonly reclaimed = new Counter({ name: 'cairn_reclaimed_bytes_total', help: 'Bytes of blocks garbage-collected', registers: [this.registry] })
  readonly clockAhead = new Gauge({
    name: 'cairn_producer_clock_ahead_seconds',
    help: "How far ahead of this node's clock a producer's latest held head or event was stamped (producers held by --max-clock-skew, at most 256)",
    labelNames: ['producer'],
    registers: [this.registry]
  })
  readonly clockOffset = new Gauge({ name: 'cairn_clock_offset_seconds', help: "The network's time minus this node's clock, from the heads it watched move forward", registers: [this.registry] })
  readonly stampsAhead = new Gauge({
    name: 'cairn_clock_stamps_ahead_seconds',
    help: "How far ahead of this node's clock it stamps its own events (it went on from a last head stamped ahead: its clock ran ahead, or is behind now); 0 when not",
    registers: [this.registry]
  })
  readonly gossipCacheBytes = new Gauge({
    name: 'cairn_gossip_cache_bytes',
    help: "Bytes in gossipsub's message cache (the last heartbeats' messages, for peers' IWANTs), at most 16 MiB",
    registers: [this.registry]
  })
  readonly memoryCollections = new Counter({
    name: 'cairn_memory_target_collections_total',
    help: 'Full garbage collections run because the resident set was over --memory-target',
    registers: [this.registry]
  })
  readonly memoryCollectSeconds = new Counter({
    name: 'cairn_memory_target_collect_seconds_total',
    help: 'Time spent in the collections --memory-target ran',
    registers: [this.registry]
  })
  readonly keptAfterRemoval = new Gauge({
    name: 'cairn_kept_after_removal_events',
    help: "Events of a removed member this node holds after the member's last valid seq: applied here before the removal arrived, refused by every other node",
    labelNames: ['producer'],
    registers: [this.registry]
  })
  readonly ownEventsRefused = new Gauge({
    name: 'cairn_own_events_refused_peers',
    help: "Members whose heads show they have not taken this node's latest events for a while, though they take others' (see cairn status)",
    registers: [this.registry]
  })
  readonly backlog = new Gauge({ name: 'cairn_backlog_events', help: 'Events in the events table not yet processed by every plugin', registers: [this.registry] })

  /** @returns the exposition text (Prometheus text format 0.0.4) */
  async text(): Promise<string> {
    return await this.registry.metrics()
  }

  get contentType(): string {
    return this.registry.contentType
  }
}
