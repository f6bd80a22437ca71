import type { Components } from '../node/components.ts'
import { rowToEnvelope, type EventRow } from '../store/events.ts'
import { backoff } from '../util/backoff.ts'
import { payloadOf } from './schemas.ts'
import type { Plugin, PluginEvent } from './types.ts'

/** What running plugins needs: the node's store, log, metrics and events, and the host's settings. */
export interface RunContext extends Pick<Components, 'store' | 'log' | 'metrics' | 'events'> {
  /** aborts when the host stops */
  signal: AbortSignal
  /** attempts before an event is dead-lettered for a plugin */
  maxAttempts: number
  /** the first retry's delay; each further one doubles it */
  backoffMs: number
  now: () => number
}

/** How many rows a plugin reads from the events table at a time. */
const PAGE = 200

/**
 * Walks one plugin forward from its cursor through the rows of the types it handles.
 *
 * @returns when to try again (a retry waiting), or Infinity
 */
export function processPlugin(ctx: RunContext, plugin: Plugin): number {
  const { events, pluginState } = ctx.store
  const types = Object.keys(plugin.handles)
  for (;;) {
    const cursor = pluginState.cursor(plugin.name)
    const rows = events.list({ after: cursor, types, limit: PAGE })
    if (rows.length === 0) {
      // Rows of other types are passed too, so that the watermark can move past them.
      const top = events.maxCursor()
      if (top > cursor) pluginState.setCursor(plugin.name, top)
      return Infinity
    }
    for (const row of rows) {
      const wait = applyOne(ctx, plugin, row, true)
      if (wait != null) return wait
    }
  }
}

/**
 * Applies one event for one plugin, at most once: the plugin's writes and the record that it applied the
 * event commit in one transaction. A failure is retried with backoff, then dead-lettered; a version newer
 * than the plugin knows is held, not dropped.
 *
 * @param advance whether this moves the plugin's cursor (false for replays)
 * @returns undefined when done with the row (applied, dead, held, skipped), or when to retry it
 */
export function applyOne(ctx: RunContext, plugin: Plugin, row: EventRow, advance: boolean): number | undefined {
  const { store } = ctx
  const state = store.pluginState
  const moveCursor = (): void => {
    if (advance) state.advanceCursor(plugin.name, row.cursor)
  }
  if (state.isApplied(plugin.name, row.event_id)) {
    store.transaction(() => {
      moveCursor()
      state.clearDeadLetter(plugin.name, row.event_id)
    })
    return undefined
  }
  const handler = plugin.handles[row.type]
  if (row.version > handler.version) {
    store.transaction(() => {
      state.hold(plugin.name, row.event_id, row.version, ctx.now())
      moveCursor()
    })
    return undefined
  }
  const failure = state.failure(plugin.name, row.event_id)
  if (failure != null && failure.next_at > ctx.now()) return failure.next_at
  const attempts = (failure?.attempts ?? 0) + 1
  const log = ctx.log.child({ plugin: plugin.name, event_id: row.event_id, producer: row.producer })
  let event: PluginEvent
  const started = performance.now()
  try {
    event = { ...rowToEnvelope(row), payload: payloadOf(handler, row) }
    store.transaction(() => {
      plugin.apply(event, { db: store.pluginDb(), log, signal: ctx.signal, plugin: plugin.name })
      state.markApplied(plugin.name, row.event_id, ctx.now(), plugin.effect != null)
      moveCursor()
    })
  } catch (err) {
    const message = (err as Error).message
    const permanent = (err as Error).name === 'PermanentError'
    if (permanent || attempts >= ctx.maxAttempts) {
      store.transaction(() => {
        state.deadLetter(plugin.name, row.event_id, attempts, message, ctx.now())
        moveCursor()
      })
      log.warn(`dead-lettered after ${attempts} attempt(s): ${message}`)
      return undefined
    }
    const nextAt = ctx.now() + backoff(attempts, { base: ctx.backoffMs, max: Infinity })
    state.recordFailure(plugin.name, row.event_id, attempts, message, nextAt)
    log.debug(`apply failed (attempt ${attempts}), retrying: ${message}`)
    return nextAt
  }
  const ms = performance.now() - started
  ctx.metrics.applied.inc({ type: event.type, plugin: plugin.name })
  ctx.metrics.applyDuration.observe({ plugin: plugin.name }, ms / 1000)
  ctx.events.safeDispatchEvent('plugin:applied', { detail: { plugin: plugin.name, event, ms } })
  return undefined
}
