import { rowToEnvelope } from '../store/events.ts'
import type { PublishRequest, PublishResult } from '../model/publishRequest.ts'
import { backoff } from '../util/backoff.ts'
import { isPermanent, thrownText, type RunContext } from './runner.ts'
import { payloadOf } from './schemas.ts'
import type { Plugin } from './types.ts'

/** The longest wait between two attempts of an effect. */
const MAX_EFFECT_DELAY = 60_000

/** How long an effect waits, without an attempt counted, before it runs again after the node refused its publish as not started. */
const NOT_STARTED_DELAY = 1000

/**
 * The errors of a publish that the node refuses until an operator acts (its history diverged, or it holds its
 * own removal): no retry of its own gets past them.
 */
const REFUSED_UNTIL_OPERATOR = new Set(['ProducerDivergedError', 'RemovedMemberError'])

/**
 * How often a plugin's effects failing on the same refusal until an operator acts are logged at error level:
 * each retries once a minute, and a thousand waiting effects would write a thousand error lines a minute.
 */
const REFUSAL_LOG_INTERVAL = 10 * 60_000

/** The errors of a publish that the node refuses for now (its clock off from the network's, a commit failed: a full disk). */
const REFUSED_FOR_NOW = new Set(['ClockSkewError', 'CommitFailedError'])

/**
 * Runs the effects that are due, each at least once after its `apply` committed, retrying a failed one with
 * backoff (`event.event_id` is the effect's idempotency key) until it succeeds or throws PermanentError.
 */
export async function runEffects(ctx: RunContext, plugins: readonly Plugin[], publish: ((request: PublishRequest) => Promise<PublishResult>) | undefined): Promise<void> {
  const { store } = ctx
  const state = store.pluginState
  for (const d of state.dueEffects(ctx.now(), names(plugins))) {
    const plugin = plugins.find((p) => p.name === d.plugin)
    const row = store.events.byId(d.event_id, d.producer)
    if (row == null) {
      // The event is gone: its effect can never run, and must not stay due.
      state.effectDone(d.plugin, d, d.attempts, ctx.now())
      ctx.log.warn(`effect of ${d.producer}/${d.event_id} dropped: the event is no longer in the events table`, { plugin: d.plugin })
      continue
    }
    const handler = plugin?.handles[row.type]
    if (plugin == null) continue
    if (handler == null || (handler.effect ?? plugin.effect) == null) {
      // This release of the plugin has no effect for the event's type: it can never run, and must not stay due.
      state.effectDone(d.plugin, d, d.attempts, ctx.now())
      ctx.log.warn(`effect of ${d.producer}/${d.event_id} dropped: plugin ${plugin.name} ${plugin.version} has no effect for ${row.type} events`, { plugin: d.plugin })
      continue
    }
    const log = ctx.log.child({ plugin: plugin.name, event_id: row.event_id, producer: row.producer })
    // The weightiest refusal of a ctx.publish of this run (refusalWeight): the run ends as that refusal, however
    // the effect ended: one that caught it and returned did not publish its follow-up, and marking it done would
    // lose that for good.
    let refusal: Error | undefined
    try {
      const event = { ...rowToEnvelope(row), payload: payloadOf(handler, row) }
      const effectCtx = {
        db: store.pluginReader(),
        log,
        signal: ctx.signal,
        plugin: plugin.name,
        self: ctx.self ?? '',
        publish: async (r: PublishRequest) => {
          if (publish == null) throw new Error('this host cannot publish')
          try {
            return await publish(r)
          } catch (err) {
            if (err instanceof Error && refusalWeight(err) > refusalWeight(refusal)) refusal = err
            throw err
          }
        }
      }
      if (handler.effect != null) await handler.effect(event, effectCtx)
      else await plugin.effect?.(event, effectCtx)
      if (refusal != null) throw refusal
      state.effectDone(d.plugin, d, d.attempts + 1, ctx.now())
    } catch (thrown) {
      const err = refusal ?? thrown
      const message = thrownText(err)
      if (err instanceof Error && err.name === 'NotStartedError') {
        // Its publish came before the node could publish: the whole effect runs again a second later, with no
        // attempt of its own counted.
        state.effectFailed(d.plugin, d, d.attempts, message, ctx.now() + NOT_STARTED_DELAY)
        log.debug(`effect waits for the node to start: ${message}`)
        continue
      }
      if (isPermanent(err)) {
        state.effectGaveUp(d.plugin, d, d.attempts + 1, message, ctx.now())
        log.error(`effect given up after ${d.attempts + 1} attempt(s), it threw PermanentError: ${message}`, { reason: 'effect_given_up' })
        continue
      }
      const delay = backoff(d.attempts + 1, { base: ctx.backoffMs, max: MAX_EFFECT_DELAY })
      state.effectFailed(d.plugin, d, d.attempts + 1, message, ctx.now() + delay)
      if (refusal != null && err === refusal && REFUSED_UNTIL_OPERATOR.has(refusal.name)) {
        // Its follow-up waits for the operator: retried with backoff, so that it is published once the node may again.
        const key = `${plugin.name}\0${refusal.name}`
        const last = ctx.refusalLogged?.get(key)
        // A clock set back since the last line (now before it) does not silence the next one.
        const loud = last == null || ctx.now() - last >= REFUSAL_LOG_INTERVAL || ctx.now() < last
        if (loud) ctx.refusalLogged?.set(key, ctx.now())
        const text = `effect failed (attempt ${d.attempts + 1}): the node refuses its ctx.publish until an operator acts, retrying in ${delay} ms`
        const fields = { reason: 'effect_publish_refused', refusal: (refusal as Error & { reason?: string }).reason }
        const quiet = ctx.refusalLogged == null ? '' : ` (the other effects of ${plugin.name} refused so are logged at debug level for ${REFUSAL_LOG_INTERVAL / 60_000} minutes)`
        if (loud) log.error(`${text}${quiet}: ${message}`, fields)
        else log.debug(`${text}: ${message}`, fields)
        continue
      }
      log.warn(`effect failed (attempt ${d.attempts + 1}), retrying in ${delay} ms: ${message}`)
    }
  }
}

/**
 * @returns how a ctx.publish refusal decides its run: not started (the run runs again, no attempt counted) over
 * refused until an operator acts (failed, logged at error level) over refused for now (failed); 0 for any other error
 */
function refusalWeight(err: Error | undefined): number {
  if (err == null) return 0
  if (err.name === 'NotStartedError') return 3
  if (REFUSED_UNTIL_OPERATOR.has(err.name)) return 2
  return REFUSED_FOR_NOW.has(err.name) ? 1 : 0
}

/** @returns the names of `plugins` (loaded ones: the effects of another plugin wait for it to be back) */
function names(plugins: readonly Plugin[]): string[] {
  return plugins.map((p) => p.name)
}

/** @returns when the next effect of `plugins` not done is due, or Infinity */
export function nextEffectAt(ctx: RunContext, plugins: readonly Plugin[]): number {
  return ctx.store.pluginState.nextEffectAt(names(plugins)) ?? Infinity
}
