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
    // A ctx.publish of this run that the node refused as not started (starting, or holding publishes behind the
    // fence). The run then counts as not started, however it ended: an effect that caught the refusal and
    // returned did not publish its follow-up, and marking it done would lose that for good.
    let refused: Error | undefined
    // A ctx.publish of this run that the node refuses until an operator acts (REFUSED_UNTIL_OPERATOR): the run
    // then failed, however it ended, for the same reason, and the log says why at error level.
    let blocked: Error | undefined
    // A ctx.publish of this run that the node refused for now (REFUSED_FOR_NOW): the run failed, however it
    // ended, and is retried with backoff as a failed one.
    let failed: Error | undefined
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
            if (err instanceof Error && err.name === 'NotStartedError') refused ??= err
            if (err instanceof Error && REFUSED_UNTIL_OPERATOR.has(err.name)) blocked ??= err
            if (err instanceof Error && REFUSED_FOR_NOW.has(err.name)) failed ??= err
            throw err
          }
        }
      }
      if (handler.effect != null) await handler.effect(event, effectCtx)
      else await plugin.effect?.(event, effectCtx)
      if (refused != null) throw refused
      if (blocked != null) throw blocked
      if (failed != null) throw failed
      state.effectDone(d.plugin, d, d.attempts + 1, ctx.now())
    } catch (thrown) {
      const err = refused ?? blocked ?? failed ?? thrown
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
      if (blocked != null && err === blocked) {
        // Its follow-up waits for the operator: retried with backoff, so that it is published once the node may again.
        log.error(`effect failed (attempt ${d.attempts + 1}): the node refuses its ctx.publish until an operator acts, retrying in ${delay} ms: ${message}`, {
          reason: 'effect_publish_refused',
          refusal: (blocked as Error & { reason?: string }).reason
        })
        continue
      }
      log.warn(`effect failed (attempt ${d.attempts + 1}), retrying in ${delay} ms: ${message}`)
    }
  }
}

/** @returns the names of `plugins` (loaded ones: the effects of another plugin wait for it to be back) */
function names(plugins: readonly Plugin[]): string[] {
  return plugins.map((p) => p.name)
}

/** @returns when the next effect of `plugins` not done is due, or Infinity */
export function nextEffectAt(ctx: RunContext, plugins: readonly Plugin[]): number {
  return ctx.store.pluginState.nextEffectAt(names(plugins)) ?? Infinity
}
