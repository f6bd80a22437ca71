import type { Store } from '../store/store.ts'
import type { ReplaySelect } from '../store/pluginState.ts'
import { applyOne, type RunContext } from './runner.ts'
import type { Plugin } from './types.ts'

/**
 * Re-runs the events queued for replay through a plugin, in cursor order, without moving its cursor. One
 * that fails again goes to the plugin's retry queue (see processPlugin), so it never holds up the others.
 *
 * @returns Infinity (retries are the retry queue's to schedule)
 */
export function replayQueued(ctx: RunContext, plugin: Plugin): number {
  for (const row of ctx.store.events.queuedForReplay(plugin.name)) {
    if (ctx.signal.aborted) break
    applyOne(ctx, plugin, row, false)
    ctx.store.pluginState.unqueueReplay(plugin.name, row)
  }
  return Infinity
}

/**
 * Queues events to run through their plugins again (`cairn replay`); the running node picks the request up
 * at its next round, a stopped one when it starts. An event a plugin already applied is never applied
 * twice: replay re-runs what is dead-lettered or held, or was never applied.
 *
 * @returns how many (plugin, event) pairs were queued
 */
export function requestReplay(store: Store, select: ReplaySelect): number {
  return store.pluginState.requestReplay(select, Date.now())
}

/**
 * Runs given-up effects once more (`cairn replay --effects`): each effect `select` names that threw
 * PermanentError is due again at once, with no attempt counted, and retried as usual if it fails. The
 * running node notices another process's write (see PluginHost.changedElsewhere), a stopped one runs it
 * when it starts.
 *
 * @returns how many effects were made due
 */
export function requestEffectReplay(store: Store, select: ReplaySelect): number {
  return store.pluginState.replayGivenUpEffects(select, Date.now())
}
