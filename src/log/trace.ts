import { stderr } from '../runtime/stdio.ts'

/**
 * Stage timestamps for measuring where an event's latency goes, off unless `CAIRN_TRACE=1`.
 * Each call writes `TRACE <stage> <seq> <epoch ms, µs precision>` to stderr, so that the stages of
 * two nodes on one machine line up on one clock (`bench/trace.ts` reads them). Off, a call is one
 * boolean test.
 */
const enabled = process.env.CAIRN_TRACE === '1'

/**
 * Records that `stage` was reached, for event `seq` where the caller knows it.
 *
 * @example
 * ```ts
 * trace('commit.started', seq)
 * ```
 */
export function trace(stage: string, seq?: number): void {
  if (enabled) stderr.line(`TRACE ${stage} ${seq ?? ''} ${(performance.timeOrigin + performance.now()).toFixed(3)}`)
}
