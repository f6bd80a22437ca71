import type { Components } from '../node/components.ts'
import { rowToEnvelope, type EventRow } from '../store/events.ts'
import { backoff } from '../util/backoff.ts'
import { clip } from '../util/clip.ts'
import { payloadOf, refuseThenable } from './schemas.ts'
import { MAX_KEYS_PER_EVENT, type Plugin, type PluginEvent, type TypeHandler } from './types.ts'

/** The most characters of what a plugin threw that its retry, dead letter or log line keeps. */
const MAX_THROWN_TEXT = 2000

/**
 * @returns what a plugin's `apply`, `keys`, upcaster or `effect` threw, as the text its retry, dead letter and log
 * lines record: a plugin may throw anything (`throw 'x'`, `throw undefined`), not only an Error
 */
export function thrownText(err: unknown): string {
  let text: string
  if (err instanceof Error) {
    text = String(err.message)
    if (text === '') text = err.name
  } else {
    let shown: string
    try {
      shown = typeof err === 'string' ? JSON.stringify(err) : String(err)
    } catch {
      shown = 'a value'
    }
    text = `threw ${shown}, which is not an Error`
  }
  return clip(text, MAX_THROWN_TEXT)
}

/** @returns whether a plugin threw PermanentError (the SDK's, or a copy of it from an installed package: known by its name) */
export function isPermanent(err: unknown): boolean {
  return err instanceof Error && err.name === 'PermanentError'
}

/** The series running plugins updates (the node's Metrics has them; the test kit counts nothing). */
export interface ApplyMetrics {
  applied: { inc(labels: { type: string; plugin: string }): void }
  applyDuration: { observe(labels: { plugin: string }, seconds: number): void }
}

/** What running plugins needs: the node's store, log, metrics and events, and the host's settings. */
export interface RunContext extends Pick<Components, 'store' | 'log' | 'events'> {
  metrics: ApplyMetrics
  /** aborts when the host stops */
  signal: AbortSignal
  /** attempts before an event is dead-lettered for a plugin */
  maxAttempts: number
  /** the first retry's delay; each further one doubles it */
  backoffMs: number
  now: () => number
  /** (plugin, type, version) triples whose holding was logged: each is logged once per process */
  heldLogged?: Set<string>
  /**
   * per (plugin, refusal) of ctx.publish that waits for an operator, when an effect's failure for it was last
   * logged at error level: one line per REFUSAL_LOG_INTERVAL, the effects' other failures for it at debug level
   */
  refusalLogged?: Map<string, number>
  /** this node's peer id, which effects get as `ctx.self` */
  self?: string
  /** set while a rebuild re-applies history: effects already ran for it, so none is queued */
  rebuilding?: boolean
  /**
   * per plugin, when its next retry is due as last read and the count of retries recorded then
   * (`PluginWrites.failures`): while no retry was recorded since and that time is ahead, none is due
   * and the retry queue is not read (the host keeps it between rounds)
   */
  nextRetry?: Map<string, { at: number; failures: number }>
  /**
   * how long (ms) one plugin may apply events in one call of processPlugin before it stops and reports more
   * work as due at once (unbounded without it): the host's round is one transaction, holding cairn.db's write
   * lock, so a long backlog is taken in rounds of bounded length with the lock free between them
   */
  budgetMs?: number
}

/** How many rows a plugin reads from the events table at a time, and retries at most per round. */
const PAGE = 200

/**
 * Walks one plugin forward from its cursor through the rows of the types it handles, after retrying the
 * events of its retry queue that are due. A failing event never stops the walk: it waits in the retry
 * queue (`plugin_failures`, with its next_at) while the events after it are applied, and is retried when
 * due, then dead-lettered when its attempts run out.
 *
 * @returns when the plugin's next retry is due, or Infinity when none waits
 */
export function processPlugin(ctx: RunContext, plugin: Plugin): number {
  const { events, pluginState } = ctx.store
  const types = Object.keys(plugin.handles)
  const until = ctx.budgetMs == null ? Infinity : performance.now() + ctx.budgetMs
  let cut = false
  const spent = (): boolean => {
    cut ||= performance.now() >= until
    return cut
  }
  const known = ctx.nextRetry?.get(plugin.name)
  const noneDue = known != null && known.failures === pluginState.writes.failures && known.at > ctx.now()
  if (!noneDue) {
    for (const row of events.dueRetries(plugin.name, ctx.now(), PAGE)) {
      if (ctx.signal.aborted || spent()) break
      applyOne(ctx, plugin, row, false)
    }
  }
  for (;;) {
    if (ctx.signal.aborted || cut) break
    const rows = events.list({ after: pluginState.cursor(plugin.name), types, limit: PAGE })
    for (const row of rows) {
      if (spent()) break
      applyOne(ctx, plugin, row, true)
    }
    if (cut) break
    if (rows.length < PAGE) {
      // Rows of other types are passed too, so that the watermark can move past them.
      if (!ctx.signal.aborted) pluginState.advanceToTop(plugin.name)
      break
    }
  }
  // Cut short by the budget: the rest is due at once, in the next round.
  const due = (at: number): number => (cut ? Math.min(at, ctx.now()) : at)
  if (noneDue && known.failures === pluginState.writes.failures) return due(known.at)
  const failures = pluginState.writes.failures
  const at = pluginState.nextRetryAt(plugin.name) ?? Infinity
  ctx.nextRetry?.set(plugin.name, { at, failures })
  return due(at)
}

/**
 * Applies one event for one plugin, at most once: the plugin's writes and the record that it applied the
 * event commit in one transaction. A failure puts the event in the plugin's retry queue with a backoff
 * (or back there with a longer one), until its attempts run out and it is dead-lettered; a permanent
 * failure is dead-lettered at once; a version newer than the plugin knows is held, not dropped.
 *
 * @param advance whether this moves the plugin's cursor (the forward walk; false for replays and retries)
 * @returns whether the event now waits for a retry
 */
export function applyOne(ctx: RunContext, plugin: Plugin, row: EventRow, advance: boolean): boolean {
  const { store } = ctx
  const state = store.pluginState
  const moveCursor = (): void => {
    if (advance) state.advanceCursor(plugin.name, row.cursor)
  }
  // The plugin's state came from a snapshot that already reflects this event: it is passed over, never applied.
  const vector = store.snapshots.loaded(plugin.name)?.vector
  if (vector != null && row.seq <= (vector[row.producer] ?? 0)) {
    store.transaction(() => {
      state.markApplied(plugin.name, row, ctx.now(), false)
      moveCursor()
    })
    return false
  }
  if (state.isApplied(plugin.name, row)) {
    store.transaction(() => {
      moveCursor()
      state.clearDeadLetter(plugin.name, row)
    })
    return false
  }
  const handler = plugin.handles[row.type]
  if (row.version > handler.version) {
    store.transaction(() => {
      state.hold(plugin.name, row, row.version, ctx.now())
      moveCursor()
    })
    const key = `${plugin.name}\n${row.type}\n${row.version}`
    if (ctx.heldLogged != null && ctx.heldLogged.size < 1000 && !ctx.heldLogged.has(key)) {
      ctx.heldLogged.add(key)
      ctx.log.warn(
        `plugin ${plugin.name} reads ${row.type} up to v${handler.version}: v${row.version} events are held for it until a version of it that reads them is loaded (cairn status counts them)`,
        {
          plugin: plugin.name,
          reason: 'plugin_event_held'
        }
      )
    }
    return false
  }
  const failure = state.failure(plugin.name, row)
  if (failure != null && failure.next_at > ctx.now()) {
    // Already in the retry queue: it runs from there when due.
    moveCursor()
    return true
  }
  const attempts = (failure?.attempts ?? 0) + 1
  const log = ctx.log.child({ plugin: plugin.name, event_id: row.event_id, producer: row.producer })
  let event: PluginEvent
  const started = performance.now()
  try {
    event = { ...rowToEnvelope(row), payload: payloadOf(handler, row) }
    const keys = stateKeysOf(handler, event.payload)
    store.transaction(() => {
      const applyCtx = { db: store.pluginDb({ duringApply: true }), log, signal: ctx.signal, plugin: plugin.name }
      const wasApplying = store.applying
      store.applying = true
      let returned: unknown
      try {
        returned = handler.apply != null ? handler.apply(event, applyCtx) : plugin.apply?.(event, applyCtx)
      } finally {
        store.applying = wasApplying
      }
      // Whatever it does after its first await is outside this transaction: its writes would not be undone
      // with it, nor counted once. It is refused for good (the load refuses an async function already;
      // this is a plain function returning a Promise).
      refuseThenable(returned, 'apply returned a Promise: apply must be synchronous (it runs inside the transaction that applies the event); put async work in effect')
      store.stateKeys.record(plugin.name, row.producer, row.seq, `${row.hlc}|${row.producer}|${row.event_id}`, keys)
      state.markApplied(plugin.name, row, ctx.now(), ctx.rebuilding !== true && (handler.effect ?? plugin.effect) != null)
      moveCursor()
    })
  } catch (err) {
    const message = thrownText(err)
    const permanent = isPermanent(err)
    if (permanent || attempts >= ctx.maxAttempts) {
      store.transaction(() => {
        state.deadLetter(plugin.name, row, attempts, message, ctx.now())
        moveCursor()
      })
      log.warn(`dead-lettered after ${attempts} attempt(s): ${message}`)
      return false
    }
    const nextAt = ctx.now() + backoff(attempts, { base: ctx.backoffMs, max: Infinity })
    store.transaction(() => {
      state.recordFailure(plugin.name, row, attempts, message, nextAt)
      moveCursor()
    })
    log.debug(`apply failed (attempt ${attempts}), retrying later: ${message}`)
    return true
  }
  const ms = performance.now() - started
  ctx.metrics.applied.inc({ type: event.type, plugin: plugin.name })
  ctx.metrics.applyDuration.observe({ plugin: plugin.name }, ms / 1000)
  ctx.events.safeDispatchEvent('plugin:applied', { detail: { plugin: plugin.name, event, ms } })
  return false
}

/**
 * @returns the canonical JSON of each state key the handler declares for this payload; without `keys`, the empty key
 * @throws Error when `keys` throws, returns something else than strings and tuples, or more than MAX_KEYS_PER_EVENT
 */
export function stateKeysOf(handler: TypeHandler, payload: unknown): string[] {
  // The empty key says: this plugin keeps no keys for the type, so plain retention decides the event.
  if (handler.keys == null) return ['']
  const keys: unknown = handler.keys(payload)
  refuseThenable(keys, 'keys() returned a Promise: keys must be synchronous (a pure function of the payload)')
  if (!Array.isArray(keys)) throw new Error(`keys() returned ${typeof keys}, expected an array of keys`)
  if (keys.length > MAX_KEYS_PER_EVENT) throw new Error(`keys() returned ${keys.length} keys, more than the ${MAX_KEYS_PER_EVENT} one event may write`)
  const out = new Set<string>()
  for (const k of keys) {
    const ok = typeof k === 'string' || (Array.isArray(k) && k.every((part) => typeof part === 'string' || typeof part === 'number'))
    if (!ok) throw new Error(`keys() returned ${JSON.stringify(k)}, expected a string or an array of strings and numbers`)
    out.add(JSON.stringify(k))
  }
  return [...out]
}
