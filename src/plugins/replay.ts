import type { Store } from '../store/store.ts'
import type { ReplaySelect } from '../store/pluginState.ts'
import { applyOne, type RunContext } from './runner.ts'
import type { Plugin } from './types.ts'

/**
 * Re-runs the events queued for replay through a plugin, in cursor order, without moving its cursor.
 *
 * @returns when to try again (a retry waiting), or Infinity
 */
export function replayQueued(ctx: RunContext, plugin: Plugin): number {
  for (const row of ctx.store.events.queuedForReplay(plugin.name)) {
    const wait = applyOne(ctx, plugin, row, false)
    if (wait != null) return wait
    ctx.store.pluginState.unqueueReplay(plugin.name, row.event_id)
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
