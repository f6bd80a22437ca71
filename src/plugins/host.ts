import type { Components, Startable } from '../node/components.ts'
import { waitFor } from '../node/events.ts'
import type { PublishRequest, PublishResult } from '../model/publishRequest.ts'
import { setImmediate as nextTurn } from 'node:timers/promises'
import type { HeldEvent } from '../store/pluginState.ts'
import { trace } from '../log/trace.ts'
import { describePlugin, versionDisagreements, type PluginInfo } from './load.ts'
import type { LoadedPlugin } from './types.ts'
import { migratePlugins, tablesOf } from './migrate.ts'
import { processPlugin, type RunContext } from './runner.ts'
import { replayQueued } from './replay.ts'
import { rebuildBeside, rebuildIfRequested, rebuildRequested } from './rebuild.ts'
import { removeLeftoverShadows } from '../store/rebuildShadow.ts'
import { nextEffectAt, runEffects } from './effects.ts'
import { jsonSchemaOf, validatePublish, type UnknownTypes } from './schemas.ts'
import type { Issue } from '../model/issues.ts'
import type { Plugin } from './types.ts'

/** How long after a failed processing round the next one starts. */
const ROUND_RETRY_MS = 1000

/**
 * How long each plugin applies events in one round (one transaction) at most: the rest of a backlog goes in
 * the next rounds, so that another process's write (cairn replay, cairn plugins rebuild, with a 5 s busy
 * timeout) gets cairn.db's write lock, and the event loop runs, during a long catch-up.
 */
const ROUND_BUDGET_MS = 100
/** The pause after a round that held its transaction for the budget or longer… */
const ROUND_GAP_MS = 10
/**
 * …and after every HANDOFF_EVERY such rounds in a row, a pause longer than the longest sleep of SQLite's busy
 * handler between two tries (100 ms): a writer in another process waiting on the lock tries within it.
 */
const HANDOFF_MS = 110
const HANDOFF_EVERY = 4

/** The plugins a host runs and how it retries. */
export interface PluginHostInit {
  plugins: readonly LoadedPlugin[]
  /** attempts before an event is dead-lettered for a plugin (default 5) */
  maxAttempts?: number
  /** the first retry's delay; each further one doubles it (default 200 ms) */
  backoffMs?: number
  /** lets `effect` publish follow-up events */
  publish?: (request: PublishRequest) => Promise<PublishResult>
  /** this node's peer id, which effects get as `ctx.self` */
  self?: string
  now?: () => number
  /** which types may be published though no local plugin reads them (default: none) */
  allowUnknownTypes?: UnknownTypes
}

/** What the plugin host uses of the node. */
export type PluginHostComponents = Pick<Components, 'store' | 'log' | 'metrics' | 'events'>

/**
 * @returns a factory of the plugin host: it applies each event once per plugin, increments
 * `metrics.applied` and `metrics.applyDuration`, and dispatches 'plugin:applied' per event applied,
 * 'plugins:progress' after each round and 'plugins:idle' when no round is under way or due
 */
export function pluginHost(init: PluginHostInit): (components: PluginHostComponents) => PluginHost {
  return (components) => new PluginHost(components, init)
}

/**
 * Runs plugins against the events table, exactly once per (plugin, event): a plugin's writes and the record
 * that it applied the event commit in one transaction. Each plugin walks the table in cursor order from its
 * own cursor, so a plugin added later backfills everything already there.
 */
export class PluginHost implements Startable {
  status: 'stopped' | 'started' = 'stopped'
  private readonly components: PluginHostComponents
  private readonly init: PluginHostInit
  private readonly ctx: RunContext
  private scheduled: { at: number; cancel: () => void } | undefined
  private running: Promise<void> | undefined
  private again = false
  /** rounds in a row that held their transaction for ROUND_BUDGET_MS or longer */
  private longRounds = 0
  /** how long to wait before the next round (see ROUND_GAP_MS, HANDOFF_MS) */
  private pause = 0
  private readonly abort = new AbortController()
  /** whether the next round reads the rebuild requests and replay queues: at start, and after a request was made */
  private requestsAsked = true
  /** `PluginWrites.requests` when the requests were last read */
  private requestsSeen = -1
  /** the watermark and `PluginWrites.progress` when it was read: it holds until a cursor or a row's state is written */
  private mark: { value: number; progress: number } | undefined
  /** when the next effect is due as last read, and `PluginWrites.effects` then */
  private nextEffect: { at: number; effects: number } | undefined
  /**
   * whether the next round runs in one transaction; after a round that failed, the next gives each event a
   * transaction of its own, so that an apply that makes SQLite roll back the whole transaction (ON CONFLICT
   * ROLLBACK, RAISE(ROLLBACK)) costs that event an attempt instead of failing every round for ever
   */
  private wholeRound = true
  /** the rebuilds under way beside the rounds (cairn.db on disk), by plugin */
  private readonly rebuilds = new Map<string, Promise<void>>()

  constructor(components: PluginHostComponents, init: PluginHostInit) {
    this.components = components
    this.init = init
    this.ctx = {
      ...components,
      self: init.self,
      signal: this.abort.signal,
      maxAttempts: init.maxAttempts ?? 5,
      backoffMs: init.backoffMs ?? 200,
      now: init.now ?? Date.now,
      heldLogged: new Set(),
      refusalLogged: new Map(),
      nextRetry: new Map(),
      budgetMs: ROUND_BUDGET_MS
    }
  }

  /** @returns the loaded plugins */
  get plugins(): Plugin[] {
    return this.init.plugins.map((p) => p.plugin)
  }

  /**
   * Applies each plugin's migrations that have not run, each in a transaction, then processes the backlog.
   *
   * @throws PluginLoadError naming the plugin, its file and the failing migration
   */
  async start(): Promise<void> {
    if (this.status === 'started') return
    if (this.onDisk) {
      const left = removeLeftoverShadows(this.components.store.db.path)
      if (left.length > 0) this.components.log.info(`removed what rebuilds cut short left: ${left.join(', ')} (they run again)`, { reason: 'plugin_rebuild_leftover' })
    }
    migratePlugins(this.components.store.pluginState, this.init.plugins)
    for (const line of versionDisagreements(this.init.plugins)) this.components.log.warn(line, { reason: 'plugin_versions_differ' })
    this.components.store.pluginState.forgetOrphanRetries()
    this.status = 'started'
    this.notify()
  }

  /** Stops processing; waits for a round under way. */
  async stop(): Promise<void> {
    if (this.status === 'stopped') return
    this.status = 'stopped'
    this.abort.abort()
    const cancelled = this.scheduled != null
    this.scheduled?.cancel()
    this.scheduled = undefined
    if (cancelled && this.running == null && this.rebuilds.size === 0) this.idle()
    await this.running
    await Promise.all(this.rebuilds.values())
  }

  /** whether cairn.db is a file (a second connection can open it): a rebuild then runs beside the rounds */
  private get onDisk(): boolean {
    const path = this.components.store.db.path
    return path !== '' && path !== ':memory:' && !path.startsWith('file::memory:')
  }

  /**
   * @returns whether a swap can copy a plugin's rebuilt tables into cairn.db: not when one is a contentless
   * full-text table (its index cannot be read back through it, nor its own tables written), which is rebuilt in one
   * transaction of cairn.db instead (rebuildIfRequested)
   */
  private copiable(plugin: Plugin): boolean {
    return this.components.store.snapshots.uncarried(tablesOf(plugin)).length === 0
  }

  /**
   * Starts a plugin's rebuild beside the rounds if one was asked for and none is under way: it runs on its own
   * connection, in slices between which the event loop runs (rebuildBeside), and its swap commits between rounds.
   */
  private startRebuild(plugin: Plugin): void {
    if (this.rebuilds.has(plugin.name) || !rebuildRequested(this.components.store, plugin.name)) return
    const task = (async (): Promise<void> => {
      // Out of the round's transaction first: the swap attaches the shadow, which SQLite refuses in a transaction.
      await nextTurn()
      const outcome = await rebuildBeside(this.ctx, plugin, () => {
        // The plugin's state was replaced: what was kept of it is asked again.
        this.ctx.nextRetry?.delete(plugin.name)
        this.mark = undefined
        this.nextEffect = undefined
      })
      if (outcome != null) this.components.events.safeDispatchEvent('plugin:rebuilt', { detail: { plugin: plugin.name, applied: outcome.applied } })
    })()
      .catch((err: Error) => {
        this.components.log.error(`rebuild of plugin ${plugin.name} failed: ${err.message}`, { plugin: plugin.name, reason: 'plugin_rebuild_failed' })
      })
      .finally(() => {
        this.rebuilds.delete(plugin.name)
        // The replays that waited for it are read at the next round.
        this.requestsAsked = true
        if (this.status === 'started') this.notify()
        else if (this.running == null && this.scheduled == null && this.rebuilds.size === 0) this.idle()
      })
    this.rebuilds.set(plugin.name, task)
  }

  /**
   * Schedules a processing round in `delay` ms (soon by default); calls coalesce, and an earlier request
   * replaces a later one, so that a retry waiting never delays new events. A request while a round runs
   * makes another round follow it; a later retry is scheduled by the round itself.
   */
  notify(delay = 0): void {
    if (this.status !== 'started') return
    if (this.running != null) {
      if (delay <= 0) this.again = true
      return
    }
    const at = Date.now() + Math.max(0, delay)
    if (this.scheduled != null) {
      if (this.scheduled.at <= at) return
      this.scheduled.cancel()
      this.scheduled = undefined
    }
    const run = (): void => {
      this.scheduled = undefined
      let retryAt = Infinity
      this.running = this.round()
        .then(
          (r) => {
            retryAt = r
          },
          (err: Error) => {
            // A round that fails as a whole (the database is full or unreadable) wrote nothing: its writes are
            // one transaction. It is tried again, not given up.
            this.components.log.error(`a plugin round failed, trying again in ${ROUND_RETRY_MS} ms: ${err.message}`, { reason: 'plugin_round_failed' })
            this.forget()
            retryAt = this.ctx.now() + ROUND_RETRY_MS
          }
        )
        .finally(() => {
          this.running = undefined
          const pause = this.pause
          this.pause = 0
          if (this.again) {
            this.again = false
            this.notify(pause)
          }
          if (retryAt !== Infinity) this.notify(Math.max(10, pause, retryAt - this.ctx.now()))
          if (this.scheduled == null && this.rebuilds.size === 0) this.idle()
        })
    }
    // setTimeout(fn, 0) waits at least a millisecond, on every hop of an event: run next turn instead.
    if (delay <= 0) {
      const immediate = setImmediate(run)
      this.scheduled = {
        at,
        cancel: () => {
          clearImmediate(immediate)
        }
      }
    } else {
      const timer = setTimeout(run, delay)
      this.scheduled = {
        at,
        cancel: () => {
          clearTimeout(timer)
        }
      }
    }
  }

  /** Processes until every plugin is blocked or done; resolves when the host is idle. */
  async drain(options: { signal?: AbortSignal } = {}): Promise<void> {
    while (this.running != null || this.scheduled != null || this.rebuilds.size > 0) await (this.running ?? waitFor(this.components.events, 'plugins:idle', options))
  }

  private idle(): void {
    this.components.events.safeDispatchEvent('plugins:idle', {})
  }

  /**
   * Tells the host that another connection (a CLI process: `cairn replay`, `cairn replay --effects`, `cairn
   * plugins rebuild`) committed to the database: the next round, which this schedules, reads the rebuild
   * requests and replay queues, and which effects are due (another connection's writes to them are not
   * counted in this connection's PluginWrites).
   */
  changedElsewhere(): void {
    this.requestsAsked = true
    this.nextEffect = undefined
    this.notify()
  }

  /** Forgets every answer kept in memory (after a round that failed: what it read may have been rolled back). */
  private forget(): void {
    this.wholeRound = false
    this.requestsAsked = true
    this.mark = undefined
    this.nextEffect = undefined
    this.ctx.nextRetry?.clear()
  }

  /** @returns when the next retry or effect is due (Infinity: none waits) */
  private async round(): Promise<number> {
    trace('plugins.round')
    const { store } = this.components
    const writes = store.pluginState.writes
    const requests = this.requestsAsked || writes.requests !== this.requestsSeen
    this.requestsAsked = false
    this.requestsSeen = writes.requests
    let retryAt: number
    try {
      const started = performance.now()
      retryAt = this.roundWrites(requests)
      this.longRounds = performance.now() - started >= ROUND_BUDGET_MS ? this.longRounds + 1 : 0
      this.pause = this.longRounds === 0 ? 0 : this.longRounds % HANDOFF_EVERY === 0 ? HANDOFF_MS : ROUND_GAP_MS
    } catch (err) {
      // Forgotten before anything else runs: what the round kept may have been rolled back.
      this.forget()
      throw err
    }
    trace('plugins.round_done')
    this.components.events.safeDispatchEvent('plugins:progress', {})
    const known = this.nextEffect
    if (known == null || known.effects !== writes.effects || known.at <= this.ctx.now()) {
      await runEffects(this.ctx, this.plugins, this.init.publish)
      const effects = writes.effects
      this.nextEffect = { at: nextEffectAt(this.ctx, this.plugins), effects }
    }
    retryAt = Math.min(retryAt, this.nextEffect?.at ?? Infinity)
    return this.status === 'started' ? retryAt : Infinity
  }

  /**
   * The round's reads and writes of the database, in one transaction: each event's apply is a savepoint in
   * it, so a plugin's writes, its applied mark and its cursor still commit or roll back together. After a
   * round that failed, one round runs without it: each event's apply is then a transaction of its own.
   *
   * @param requests whether to read the rebuild requests and replay queues
   * @returns when the next retry is due (Infinity: none waits)
   */
  private roundWrites(requests: boolean): number {
    const { store } = this.components
    const writes = store.pluginState.writes
    const whole = this.wholeRound
    this.wholeRound = true
    const body = (): number => {
      let at = Infinity
      for (const { plugin } of this.init.plugins) {
        if (this.status !== 'started') return Infinity
        if (requests) {
          if (this.onDisk && this.copiable(plugin)) this.startRebuild(plugin)
          else {
            const rebuilt = rebuildIfRequested(this.ctx, plugin)
            if (rebuilt != null) this.components.events.safeDispatchEvent('plugin:rebuilt', { detail: { plugin: plugin.name, applied: rebuilt } })
          }
          // A replay waits for the rebuild's swap, which replaces the plugin's dead letters and holds with the
          // shadow's: applied to the old tables now, it would be undone by it. It runs on the new tables after.
          if (!this.rebuilds.has(plugin.name)) at = Math.min(at, replayQueued(this.ctx, plugin))
        }
        at = Math.min(at, processPlugin(this.ctx, plugin))
      }
      const low = this.pluginsCursor()
      store.events.markDone(
        low,
        this.plugins.map((p) => p.name)
      )
      if (this.init.plugins.length > 0) this.mark = { value: this.markOf(low), progress: writes.progress }
      return at
    }
    return whole ? store.transaction(body) : body()
  }

  /** @returns the highest cursor every plugin's forward walk has passed (rows waiting for a retry included) */
  private pluginsCursor(): number {
    const { store } = this.components
    if (this.init.plugins.length === 0) return store.events.maxCursor()
    return store.pluginState.lowestCursor(this.init.plugins.map((p) => p.plugin.name))
  }

  /** @returns the watermark, given the plugins' lowest cursor */
  private markOf(low: number): number {
    const pending = this.components.store.events.lowestPendingCursor()
    return Math.min(low, pending == null ? Infinity : pending - 1)
  }

  /**
   * @returns the highest cursor up to which every row is finished by every plugin (applied, dead-lettered,
   * held or skipped): a row waiting for a plugin's retry holds it back until it is applied or dead-lettered,
   * so that /v1/stream, which resumes by cursor, never passes over a row it has not shown
   */
  watermark(): number {
    const { store } = this.components
    if (this.init.plugins.length === 0) return store.events.maxCursor()
    if (this.status !== 'started') return 0
    // Rows added later have higher cursors than any handed out: only a cursor or a row's state moves it.
    const progress = store.pluginState.writes.progress
    if (this.mark?.progress !== progress) this.mark = { value: this.markOf(this.pluginsCursor()), progress }
    return this.mark.value
  }

  /**
   * Checks a payload about to be published against the local plugin that declares its type.
   *
   * @returns the version to publish (given, else 1) and `type`, `version` or `payload.…: message` issues
   */
  validatePublish(type: string, version: number | undefined, payload: unknown): { version: number; issues: Issue[] } {
    return validatePublish(this.plugins, type, version, payload, this.init.allowUnknownTypes)
  }

  /** @returns the loaded plugins with their types, versions, source and the tables their migrations create */
  listPlugins(): PluginInfo[] {
    return this.init.plugins.map((loaded) => {
      const info = describePlugin(loaded)
      const name = loaded.plugin.name
      if (this.rebuilds.has(name)) info.rebuild = 'running'
      else if (rebuildRequested(this.components.store, name)) info.rebuild = 'asked'
      return info
    })
  }

  /** @returns the events held because no plugin knows their version, by plugin */
  held(): HeldEvent[] {
    return this.components.store.pluginState.held()
  }

  /** @returns the payload's JSON Schema for a type, from the plugin that declares it */
  jsonSchema(type: string, version?: number): object {
    return jsonSchemaOf(this.plugins, type, version)
  }
}
