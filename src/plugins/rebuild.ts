import { setImmediate as nextTurn, setTimeout as delay } from 'node:timers/promises'
import type { Store } from '../store/store.ts'
import { RebuildShadow, RebuildSwap } from '../store/rebuildShadow.ts'
import { isBusy } from '../runtime/sqlite.ts'
import { migrateOne, tablesOf, viewsOf } from './migrate.ts'
import { processPlugin, type ApplyMetrics, type RunContext } from './runner.ts'
import type { Plugin } from './types.ts'

/** The meta key under which `cairn plugins rebuild NAME` asks for a plugin's rebuild. */
const requestKey = (plugin: string): string => `plugin_rebuild:${plugin}`

/** Asks for a plugin's rebuild: the running node does it at its next round (within a second), a stopped one when it starts. */
export function requestRebuild(store: Store, plugin: string): void {
  store.meta.put(requestKey(plugin), new Date().toISOString())
  // A host on this connection checks for requests only after one was made here or elsewhere (PluginHost).
  store.pluginState.writes.requests++
}

/** @returns whether a plugin's rebuild was asked for and has not run yet */
export function rebuildRequested(store: Store, plugin: string): boolean {
  return store.meta.get(requestKey(plugin)) != null
}

/** Thrown inside the rebuild's transaction to roll it back when the host stops half-way. */
class RebuildAbortedError extends Error {
  static name = 'RebuildAbortedError'
  constructor() {
    super('the plugin host stopped during a rebuild; it runs again at the next start')
    this.name = 'RebuildAbortedError'
  }
}

/** @returns metrics that count the events applied into `counted.applied`, and pass everything on to `metrics` */
function counting(metrics: ApplyMetrics, counted: { applied: number }): ApplyMetrics {
  return {
    ...metrics,
    applied: {
      inc: (labels: { type: string; plugin: string }) => {
        counted.applied++
        metrics.applied.inc(labels)
      }
    }
  }
}

/**
 * Rebuilds a plugin if asked, for a database of one connection (the test kit's in-memory one): in ONE transaction, drops its tables and views, runs its migrations again on
 * fresh tables, forgets what it applied and the state keys it recorded, and re-applies every retained event of its types from the first
 * row, so readers see the old tables until the new ones replace them all at once, and a crash half-way
 * leaves the old ones (and the request) as they were. Each event is applied exactly once into the new
 * tables; effects are not run again, but an event the old tables were waiting on (retrying, dead-lettered,
 * held) that the new ones apply has its effect queued, as a replay would.
 *
 * @returns how many events were re-applied, or undefined when no rebuild was asked for
 */
export function rebuildIfRequested(ctx: RunContext, plugin: Plugin): number | undefined {
  const { store } = ctx
  if (!rebuildRequested(store, plugin.name)) return undefined
  const counted = { applied: 0 }
  const count = counting(ctx.metrics, counted)
  try {
    store.transaction(() => {
      store.pluginState.rememberWaiting(plugin.name)
      store.pluginState.reset(plugin.name, { views: viewsOf(plugin), tables: tablesOf(plugin) })
      // Fresh tables no longer hold a loaded snapshot's state: every retained event is applied, and a plugin
      // that misses pruned history looks for a snapshot again (plugins/snapshots.ts).
      store.snapshots.forget(plugin.name)
      // The keys are recorded again as the plugin declares them now: a plugin that fixed wrong keys is compacted by the new ones.
      store.stateKeys.forgetPlugin(plugin.name)
      migrateOne(store.pluginState, plugin, 'rebuild')
      store.meta.delete(requestKey(plugin.name))
      processPlugin({ ...ctx, metrics: count, rebuilding: true, budgetMs: undefined }, plugin)
      if (ctx.signal.aborted) throw new RebuildAbortedError()
      // The events it had not applied (retrying, dead letters, held) and applies now: their effects never ran.
      store.pluginState.queueWaitingEffects(plugin.name, effectTypes(plugin), ctx.now())
    })
  } catch (err) {
    if ((err as Error).name === 'RebuildAbortedError') return undefined
    return failed(ctx, plugin, err as Error)
  }
  ctx.log.info(`rebuilt plugin ${plugin.name}: re-applied ${counted.applied} event(s) into fresh tables`, { plugin: plugin.name, reason: 'plugin_rebuilt' })
  return counted.applied
}

/** @returns the types of `plugin` that have an effect */
function effectTypes(plugin: Plugin): string[] {
  return Object.entries(plugin.handles)
    .filter(([, handler]) => (handler.effect ?? plugin.effect) != null)
    .map(([type]) => type)
}

/** How long one slice of a rebuild applies events in its shadow before it gives the event loop back. */
const SLICE_MS = 20
/** How long a rebuild waits before it tries its swap again when another process held cairn.db's write lock. */
const BUSY_RETRY_MS = 1000

/** What a rebuild on a second connection reports when it ends. */
export interface RebuildOutcome {
  /** events applied into the new tables: in the shadow, and in the swap */
  applied: number
  /** of them, those applied in the swap (the events that came after the shadow's last slice) */
  appliedInSwap: number
  /** how long the swap's transaction held cairn.db's write lock */
  swapMs: number
  /** how long the rebuild took from its start */
  totalMs: number
  /** the slices the shadow was built in */
  slices: number
}

/**
 * Rebuilds a plugin asked for (`requestRebuild`) while the node goes on serving, for a database on disk:
 *
 * 1. In a shadow file beside cairn.db (`rebuild-<plugin>.db`, on a second connection with cairn.db attached
 *    read-only), runs the plugin's migrations and re-applies every retained event of its types with the runner,
 *    in slices of SLICE_MS (each one transaction of the shadow, reading one snapshot of cairn.db), giving the
 *    event loop back between them. cairn.db's write lock is never taken: the node's rounds apply new events to the
 *    old tables meanwhile, with their effects, and readers see the old tables whole.
 * 2. Once a slice has walked to the last row, both connections record the events whose applied marks or state
 *    keys change from then on, and the next slices (still walking) take the difference between the shadow's marks
 *    and keys and cairn.db's, a page at a time (RebuildShadow.differ).
 * 3. Then swaps in ONE transaction of cairn.db: drops the plugin's tables and views, runs its migrations again,
 *    copies the shadow's rows into them (triggers dropped for the copy and created again), makes the plugin's
 *    applied marks and state keys the shadow's by that difference (and, for the events recorded as changed since,
 *    by comparing them again), its retries, dead letters, holds and cursor the shadow's, forgets its loaded
 *    snapshot and the request, applies the events that came since the last slice (no effects: the old tables'
 *    walk queued them) and queues the effects of the events since the rebuild began that the old tables had not
 *    applied (not reached, or failed on) and of the events they were waiting on (retrying, dead-lettered, held). Its length grows with the plugin's tables and with how many marks and
 *    keys differ (all keys, for a plugin that changed them), not with a slice's work.
 *
 * A stop (ctx.signal) abandons it: the shadow is removed, the old tables and the request stay, and the next
 * start rebuilds. An error (the disk is full, a migration fails) removes the shadow, leaves the old tables and
 * drops the request (asked again it would fail again), logged as `plugin_rebuild_failed`.
 *
 * @param onSwapped called right after the swap committed, before anything else runs on the event loop
 * @returns what it did, or undefined when it was abandoned or failed
 */
export async function rebuildBeside(ctx: RunContext, plugin: Plugin, onSwapped: () => void): Promise<RebuildOutcome | undefined> {
  const { store } = ctx
  const started = performance.now()
  const counted = { applied: 0 }
  // The events past it come during the rebuild: the effects of those the old tables do not apply are the swap's to queue.
  const from = store.pluginState.cursor(plugin.name)
  let shadow: RebuildShadow | undefined
  // cairn.db's side: what changes there while the shadow takes its difference, and the swap.
  const live = new RebuildSwap(store.db)
  try {
    shadow = RebuildShadow.create(store, plugin.name)
    const shadowStore = shadow.store
    // Its own run context: the shadow's store, no effects, no kept retry answers of the host's.
    const shadowCtx: RunContext = { ...ctx, store: shadowStore, metrics: counting(ctx.metrics, counted), rebuilding: true, budgetMs: SLICE_MS, nextRetry: undefined }
    migrateOne(shadowStore.pluginState, plugin, 'rebuild')
    // The tables its migrations made: any other one the shadow has at the swap, its handlers made.
    const migrated = shadow.tables()
    ctx.log.info(`rebuilding plugin ${plugin.name} in ${shadow.path}: its tables stay as they are until the rebuilt ones replace them at once`, {
      plugin: plugin.name,
      reason: 'plugin_rebuild_started',
      events_cursor: store.events.maxCursor()
    })
    ctx.events.safeDispatchEvent('plugin:rebuilding', { detail: { plugin: plugin.name } })
    let slices = 0
    // Once the walk first reaches the last row, both sides record what changes and the shadow takes the
    // difference of the marks and keys in the slices, which the swap would otherwise take whole.
    let differing = false
    for (;;) {
      // Walk the shadow to the last row and take the difference, a slice at a time.
      for (;;) {
        if (ctx.signal.aborted) return abandoned(ctx, plugin)
        const s = shadow
        const step = shadowStore.transaction(() => {
          const until = performance.now() + SLICE_MS
          processPlugin(shadowCtx, plugin)
          const top = s.atTop(plugin.name)
          if (!differing) return top ? 'top' : 'walking'
          return s.differ(plugin.name, until) && top ? 'done' : 'differing'
        })
        slices++
        if (step === 'done') break
        if (step === 'top') {
          // Before any page of the difference reads either side.
          live.watch(plugin.name)
          shadow.watch()
          differing = true
        }
        await nextTurn()
      }
      if (ctx.signal.aborted) return abandoned(ctx, plugin)
      try {
        const inShadow = counted.applied
        const swapStarted = performance.now()
        swap(ctx, plugin, live, shadow.path, migrated, from, counted)
        const swapMs = performance.now() - swapStarted
        onSwapped()
        const outcome: RebuildOutcome = { applied: counted.applied, appliedInSwap: counted.applied - inShadow, swapMs, totalMs: performance.now() - started, slices }
        ctx.log.info(
          `rebuilt plugin ${plugin.name}: re-applied ${outcome.applied} event(s) into fresh tables in ${Math.round(outcome.totalMs)} ms (${slices} slice(s) beside the running node); the swap held cairn.db for ${Math.round(swapMs)} ms`,
          {
            plugin: plugin.name,
            reason: 'plugin_rebuilt',
            applied: outcome.applied,
            applied_in_swap: outcome.appliedInSwap,
            swap_ms: Math.round(swapMs),
            total_ms: Math.round(outcome.totalMs),
            slices
          }
        )
        return outcome
      } catch (err) {
        // Another process (cairn replay) held cairn.db's write lock past the busy timeout: the walk goes on
        // (events came meanwhile) and the swap is tried again.
        if (!isBusy(err)) throw err
        ctx.log.warn(`the swap of plugin ${plugin.name}'s rebuild waited for cairn.db's write lock in vain; trying again in ${BUSY_RETRY_MS} ms`, {
          plugin: plugin.name,
          reason: 'plugin_rebuild_busy'
        })
        // A stop rejects it: the rebuild is then abandoned (below).
        await delay(BUSY_RETRY_MS, undefined, { signal: ctx.signal })
      }
    }
  } catch (err) {
    if (ctx.signal.aborted) return abandoned(ctx, plugin)
    return failed(ctx, plugin, err as Error)
  } finally {
    try {
      live.unwatch(plugin.name)
    } finally {
      shadow?.remove()
    }
  }
}

/** A rebuild that failed: asked again, it would fail again, so the request is dropped; the old tables are as they were. */
function failed(ctx: RunContext, plugin: Plugin, err: Error): undefined {
  ctx.store.meta.delete(requestKey(plugin.name))
  ctx.log.error(`rebuild of plugin ${plugin.name} failed, its tables are unchanged: ${err.message}`, { plugin: plugin.name, reason: 'plugin_rebuild_failed' })
  return undefined
}

function abandoned(ctx: RunContext, plugin: Plugin): undefined {
  ctx.log.info(`the rebuild of plugin ${plugin.name} stopped with the node; its tables are unchanged and it runs again at the next start`, {
    plugin: plugin.name,
    reason: 'plugin_rebuild_abandoned'
  })
  return undefined
}

/** The swap of rebuildBeside, on cairn.db's connection: see there. */
function swap(ctx: RunContext, plugin: Plugin, statements: RebuildSwap, path: string, migrated: readonly string[], from: number, counted: { applied: number }): void {
  const { store } = ctx
  const types = effectTypes(plugin)
  statements.attach(path)
  try {
    store.transaction(() => {
      statements.deferForeignKeys()
      statements.rememberApplied(plugin.name, from, types)
      store.pluginState.rememberWaiting(plugin.name)
      const copied = statements.shadowTables()
      // A table the plugin's handlers made in the shadow that cairn.db has although no migration of the plugin
      // made it may be another's (another plugin's, cairn's own): replacing it could wipe the owner's rows.
      // SQLite folds the case of ASCII letters only.
      const fold = (t: string): string => t.replace(/[A-Z]/g, (c) => c.toLowerCase())
      const made = new Set(migrated.map(fold))
      const foreign = copied.filter((t) => !made.has(fold(t)) && statements.hasTable(t))
      if (foreign.length > 0)
        throw new Error(
          `its handlers wrote table(s) ${foreign.join(', ')}, which its migrations do not create and cairn.db already has: a rebuild cannot tell those rows from another owner's (create the plugin's tables in its migrations)`
        )
      // The tables its migrations left (not every name their text creates: one they drop again may be another's).
      const tables = [...new Set([...migrated, ...copied])]
      // Its queued replays stay: asked during the rebuild, they run on the new tables (an event the new tables
      // applied is not applied again).
      store.pluginState.dropObjects(plugin.name, { views: viewsOf(plugin), tables })
      store.snapshots.forget(plugin.name)
      migrateOne(store.pluginState, plugin, 'rebuild')
      const triggers = statements.dropTriggers(copied)
      statements.copyTables(copied)
      statements.createTriggers(triggers)
      statements.copyState(plugin.name)
      // What the host keeps in memory of the plugin's cursor and retries is asked again.
      store.pluginState.writes.progress++
      store.pluginState.writes.failures++
      store.meta.delete(requestKey(plugin.name))
      // The events committed since the shadow's last slice (no effects queued: the old tables' walk queued them)…
      processPlugin({ ...ctx, metrics: counting(ctx.metrics, counted), rebuilding: true, budgetMs: undefined, nextRetry: undefined }, plugin)
      // …for those it applied: the events since the rebuild began that it had not applied (not reached, or failed
      // on) have their effects queued now.
      if (statements.queueEffects(plugin.name, from, types, ctx.now()) > 0) store.pluginState.writes.effects++
      // …and so do the events the old tables were waiting on (retrying, dead letters, held) that the new ones applied.
      store.pluginState.queueWaitingEffects(plugin.name, types, ctx.now())
    })
  } finally {
    // A failure here must not hide the swap's own error; the next swap detaches what is left first.
    try {
      statements.detach()
    } catch (err) {
      ctx.log.warn(`could not detach the shadow of plugin ${plugin.name}'s rebuild: ${(err as Error).message}`, { plugin: plugin.name, reason: 'plugin_rebuild_detach_failed' })
    }
  }
}
