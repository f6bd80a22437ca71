import type { Store } from '../store/store.ts'
import { migrateOne, tablesOf, viewsOf } from './migrate.ts'
import { processPlugin, type RunContext } from './runner.ts'
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

/**
 * Rebuilds a plugin if asked: in ONE transaction, drops its tables and views, runs its migrations again on
 * fresh tables, forgets what it applied and the state keys it recorded, and re-applies every retained event of its types from the first
 * row, so readers see the old tables until the new ones replace them all at once, and a crash half-way
 * leaves the old ones (and the request) as they were. Each event is applied exactly once into the new
 * tables; effects are not run again.
 *
 * @returns how many events were re-applied, or undefined when no rebuild was asked for
 */
export function rebuildIfRequested(ctx: RunContext, plugin: Plugin): number | undefined {
  const { store } = ctx
  if (!rebuildRequested(store, plugin.name)) return undefined
  let applied = 0
  const count = {
    ...ctx.metrics,
    applied: {
      inc: (labels: { type: string; plugin: string }) => {
        applied++
        ctx.metrics.applied.inc(labels)
      }
    }
  }
  try {
    store.transaction(() => {
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
    })
  } catch (err) {
    if ((err as Error).name === 'RebuildAbortedError') return undefined
    // Asked again, it would fail again: the request is dropped, and the old tables are as they were.
    store.meta.delete(requestKey(plugin.name))
    ctx.log.error(`rebuild of plugin ${plugin.name} failed, its tables are unchanged: ${(err as Error).message}`, { plugin: plugin.name, reason: 'plugin_rebuild_failed' })
    return undefined
  }
  ctx.log.info(`rebuilt plugin ${plugin.name}: re-applied ${applied} event(s) into fresh tables`, { plugin: plugin.name, reason: 'plugin_rebuilt' })
  return applied
}
