import type { Components } from '../node/components.ts'
import type { Outbox } from '../publish/outbox.ts'
import { busRoot } from '../unixfs/busRoot.ts'
import { collectGarbage } from './gc.ts'
import { prunable } from './prune.ts'
import { forgetGoneDirs, type CheckedDays } from './remoteDirs.ts'

/** What one housekeeping run did; the last one is kept in `meta` and shown in status. */
export interface HousekeepingResult {
  at: string
  duration_ms: number
  pruned_files: number
  /** of pruned_files, those that went because newer events superseded every state key they write */
  compacted_files: number
  /** members whose acks held pruning back */
  held_back_by: string[]
  blocks_deleted: number
  reclaimed_bytes: number
  events_deleted: number
  /** rows of `remote_dirs` forgotten: of the days and hours other producers pruned */
  remote_dirs_deleted: number
  error?: string
}

/** How long things are kept. */
export interface HousekeeperInit {
  /** the outbox whose files are pruned (it dispatches 'outbox:pruned' with the new head) */
  outbox: Outbox
  /** own files younger than this (ms) stay */
  retention: number
  /** own files older than this (ms) go whatever the acks */
  retentionMax: number
  /** rows of `events` that every plugin processed go after this long (ms); undefined keeps them */
  eventsRetention?: number
  /** the members whose acks count; undefined means every producer this node knows */
  members: () => string[] | undefined
  /** the roots of the syncs under way (Syncer.walkingRoots): garbage collection keeps what they reach */
  walking?: () => string[]
  /** stores the blocks the syncs under way hold in memory (BlockFetcher.flushWalks), before garbage collection deletes */
  flushWalks?: () => void
  /** the highest own seq that this node's plugins have processed */
  processed: () => number
  now?: () => number
}

/** What the housekeeper is built from. */
export type HousekeeperComponents = Pick<Components, 'self' | 'store' | 'blocks' | 'log' | 'metrics'>

/** @returns a factory of this node's housekeeper (see Housekeeper) */
export function housekeeper(init: HousekeeperInit): (components: HousekeeperComponents) => Housekeeper {
  return (components) => new Housekeeper(components, init)
}

/**
 * Prunes this node's own event files once they are older than the retention window and every member's
 * acks cover them (or they pass the hard maximum age), then garbage-collects blocks that no root references.
 */
export class Housekeeper {
  status: 'starting' | 'started' | 'stopping' | 'stopped' = 'stopped'
  private readonly components: HousekeeperComponents
  private readonly init: HousekeeperInit
  private running: Promise<HousekeepingResult> | undefined
  /** the part of the run under way (what a stop waits on), undefined between runs */
  phase?: string
  /** what the last runs found in other producers' trees (see forgetGoneDirs) */
  private readonly checkedDays: CheckedDays = new Map()

  constructor(components: HousekeeperComponents, init: HousekeeperInit) {
    this.components = components
    this.init = init
  }

  start(): void {
    this.status = 'started'
  }

  /** Waits for a run under way. */
  async stop(): Promise<void> {
    if (this.status === 'stopped') return
    this.status = 'stopping'
    await this.running
    this.status = 'stopped'
  }

  /** Runs once; a call while a run is under way joins it. Records the result, counts and logs it. */
  async run(): Promise<HousekeepingResult> {
    this.running ??= this.runOnce().finally(() => {
      this.running = undefined
    })
    return await this.running
  }

  private async runOnce(): Promise<HousekeepingResult> {
    const { self, store, blocks, log, metrics } = this.components
    const now = this.init.now?.() ?? Date.now()
    const started = Date.now()
    const result: HousekeepingResult = {
      at: new Date(now).toISOString(),
      duration_ms: 0,
      pruned_files: 0,
      compacted_files: 0,
      held_back_by: [],
      blocks_deleted: 0,
      reclaimed_bytes: 0,
      events_deleted: 0,
      remote_dirs_deleted: 0
    }
    // Each phase's milliseconds, for the log line: which part of a run takes the time.
    const phases: Record<string, number> = {}
    let mark = started
    const lap = (name: string, next?: string): void => {
      const t = Date.now()
      phases[`${name}_ms`] = t - mark
      mark = t
      this.phase = next
    }
    this.phase = 'select'
    try {
      const { seqs, compacted, heldBackBy } = prunable(
        store,
        { self, retention: this.init.retention, retentionMax: this.init.retentionMax, members: this.init.members, processed: this.init.processed },
        now
      )
      result.held_back_by = heldBackBy
      lap('select', 'prune')
      const pruned = await this.init.outbox.prune(seqs, compacted)
      result.pruned_files = pruned.removed
      result.compacted_files = pruned.removed === 0 ? 0 : compacted.size
      store.stateKeys.forgetSuperseded(self)
      lap('prune', 'bus')
      // The bus root that status reports is served to any IPFS client: it survives collection (rebuilt and
      // stored here, so it is the current one).
      const bus = await busRoot(store.producers.syncedRoots(), blocks)
      lap('bus', 'dirs')
      result.remote_dirs_deleted = await forgetGoneDirs(store, (cid) => blocks.getSync(cid), this.checkedDays, { stopping: () => this.status === 'stopping' })
      lap('dirs', 'gc')
      // Its sweep runs between the outbox's writes: the blocks of one under way are not reachable from its head yet.
      const gc = await collectGarbage(store, blocks, {
        keep: [bus],
        exclusive: async (fn) => {
          this.phase = 'gc, waiting for the outbox'
          const r = await this.init.outbox.exclusive(fn)
          this.phase = 'gc'
          return r
        },
        walking: this.init.walking,
        flushWalks: this.init.flushWalks,
        stopping: () => this.status === 'stopping'
      })
      result.blocks_deleted = gc.blocks
      result.reclaimed_bytes = gc.bytes
      lap('gc', 'events')
      if (this.init.eventsRetention != null) {
        // The start rebuilds lost blocks of the last commits from their events rows: blocks.db is synced
        // before any row can go, so no row is needed for a block that a power cut may still take.
        if (!this.init.outbox.syncBlocks()) throw new Error('cannot sync blocks.db, so the rows of events that a start may rebuild its last blocks from stay')
        result.events_deleted = store.events.deleteProcessedBefore(now - this.init.eventsRetention)
        if (result.events_deleted > 0) store.pluginState.forgetEffectsOfGoneEvents()
        lap('events')
      }
    } catch (err) {
      result.error = (err as Error).message
    } finally {
      this.phase = undefined
    }
    result.duration_ms = Date.now() - started
    store.meta.put('housekeeping', JSON.stringify(result))
    store.meta.add('reclaimed_bytes', result.reclaimed_bytes)
    metrics.reclaimed.inc(result.reclaimed_bytes)
    metrics.compacted.inc(result.compacted_files)
    if (result.error != null) log.warn(`housekeeping failed: ${result.error}`)
    else if (result.pruned_files > 0 || result.blocks_deleted > 0 || result.remote_dirs_deleted > 0)
      log.info('housekeeping', {
        pruned_files: result.pruned_files,
        compacted_files: result.compacted_files,
        blocks_deleted: result.blocks_deleted,
        remote_dirs_deleted: result.remote_dirs_deleted,
        reclaimed_bytes: result.reclaimed_bytes,
        duration_ms: result.duration_ms,
        ...phases
      })
    return result
  }
}
