import type { Components } from '../node/components.ts'
import type { Outbox } from '../publish/outbox.ts'
import { busRoot } from '../unixfs/busRoot.ts'
import { formatMs } from '../model/clockSkew.ts'
import { DEFAULT_MAX_CLOCK_SKEW_MS } from '../model/hlc.ts'
import { parseRecordedClock, PRUNE_CLOCK_KEY, PruneClock, type PruneTime, systemUptime, type Uptime } from './clock.ts'
import { collectGarbage } from './gc.ts'
import { membersTime, prunable, type PruneRules } from './prune.ts'
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
  /**
   * own files the wall clock would have let go that the guarded clock kept (housekeeping/clock.ts), counted
   * when the wall clock is more than --max-clock-skew ahead of it; absent otherwise
   */
  kept_for_clock?: { files: number; clock_ahead_ms: number }
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
  /** the producers whose membership changes stay past eventsRetention (owners, past and present); undefined keeps everyone's */
  changeAuthors?: () => readonly string[] | undefined
  /** the members whose acks count; undefined means every producer this node knows */
  members: () => string[] | undefined
  /** the roots of the syncs under way (Syncer.walkingRoots): garbage collection keeps what they reach */
  walking?: () => string[]
  /** stores the blocks the syncs under way hold in memory (BlockFetcher.flushWalks), before garbage collection deletes */
  flushWalks?: () => void
  /** the highest own seq that this node's plugins have processed */
  processed: () => number
  /** how far the wall clock may be ahead of the guarded clock before the files it keeps are reported (--max-clock-skew) */
  maxClockSkew?: number
  /** this node's wall clock (Date.now) */
  now?: () => number
  /** the machine's uptime, which no setting of the system clock moves (systemUptime) */
  uptime?: () => Uptime
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
  /** what ages the files that go without every member's acknowledgement */
  private readonly clock: PruneClock
  /** whether the last run kept files for the clock (logged when that starts and when it ends) */
  private keptForClock = false
  /** reads the guarded clock when the boot's first minutes are up (PruneClock.settleDue); undefined when none is due */
  private settleTimer: ReturnType<typeof setTimeout> | undefined

  constructor(components: HousekeeperComponents, init: HousekeeperInit) {
    this.components = components
    this.init = init
    this.clock = new PruneClock(init.now ?? Date.now, init.uptime ?? systemUptime, parseRecordedClock(components.store.meta.get(PRUNE_CLOCK_KEY)))
  }

  start(): void {
    this.status = 'started'
    this.recordClock()
    // Steps of the wall clock in the boot's first minutes are the boot's own only when a reading in them sees
    // them: the next run may come long after.
    const due = this.clock.settleDue()
    if (due != null) {
      this.settleTimer = setTimeout(() => {
        this.settleTimer = undefined
        if (this.status === 'started') this.recordClock()
      }, due)
      // It keeps no process alive: a node that stops clears it, and a process that ends needs no reading.
      this.settleTimer.unref?.()
    }
  }

  /** Waits for a run under way. */
  async stop(): Promise<void> {
    if (this.status === 'stopped') return
    this.status = 'stopping'
    clearTimeout(this.settleTimer)
    this.settleTimer = undefined
    await this.running
    this.recordClock()
    this.status = 'stopped'
  }

  /** Keeps the guarded clock's record in cairn.db, for the next start to go on from (after a crash, from the last run's). */
  private recordClock(): void {
    this.components.store.meta.put(PRUNE_CLOCK_KEY, JSON.stringify(this.clock.recorded()))
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
    const rules: PruneRules = { self, retention: this.init.retention, retentionMax: this.init.retentionMax, members: this.init.members, processed: this.init.processed }
    const now = this.clock.read(membersTime(store, rules))
    const started = Date.now()
    const result: HousekeepingResult = {
      at: new Date(now.wall).toISOString(),
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
    let selected = false
    try {
      const { seqs, compacted, heldBackBy } = prunable(store, rules, now)
      result.held_back_by = heldBackBy
      result.kept_for_clock = this.keptFor(rules, now, seqs)
      selected = true
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
        // A backend reading the stream acknowledges nothing: rows are aged on the guarded clock, as files that go without every member's acknowledgement are.
        result.events_deleted = store.events.deleteProcessedBefore(now.guarded - this.init.eventsRetention, this.init.changeAuthors?.())
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
    this.recordClock()
    // A run that failed before it selected says nothing about the clock.
    if (selected) this.logKeptForClock(result.kept_for_clock)
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

  /**
   * @returns how many own files the wall clock would have let go beside `seqs` (those the guarded clock let
   * go), when the wall clock is more than --max-clock-skew ahead of the guarded one; undefined otherwise
   */
  private keptFor(rules: PruneRules, now: PruneTime, seqs: number[]): HousekeepingResult['kept_for_clock'] {
    const ahead = now.wall - now.guarded
    if (ahead <= (this.init.maxClockSkew ?? DEFAULT_MAX_CLOCK_SKEW_MS)) return undefined
    const going = new Set(seqs)
    const files = prunable(this.components.store, rules, { wall: now.wall, guarded: now.wall }).seqs.filter((s) => !going.has(s)).length
    return files === 0 ? undefined : { files, clock_ahead_ms: ahead }
  }

  /** Logs when the guarded clock starts keeping files and when it stops. */
  private logKeptForClock(kept: HousekeepingResult['kept_for_clock']): void {
    const { log } = this.components
    if (kept != null && !this.keptForClock) log.warn(keptForClockText(kept), { reason: 'prune_clock_ahead', files: kept.files, clock_ahead_ms: kept.clock_ahead_ms })
    else if (kept == null && this.keptForClock) log.info('housekeeping no longer keeps own files for the clock', { reason: 'prune_clock_caught_up' })
    this.keptForClock = kept != null
  }
}

/** @returns what own files kept for the clock mean, for the log line and the status reason */
export function keptForClockText(kept: NonNullable<HousekeepingResult['kept_for_clock']>): string {
  return `housekeeping keeps ${kept.files} own file(s) that this node's clock says may go without every member's acknowledgement (past retention-max, compacted, or waiting on a member silent that long): its clock is ${formatMs(kept.clock_ahead_ms)} ahead of the time the machine measured since (its uptime) and its members' heads show: it was set ahead, or set right from behind after the boot's first 15 minutes (a VM resumed). If it is wrong, set it right (NTP); they go once the clock is right, once members' heads show that time, once that much more time has passed, or at the next reboot (docs/operations.md, "Retention and the clock")`
}
