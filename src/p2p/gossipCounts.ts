import type { MetricsRegister } from '@libp2p/gossipsub/metrics'

/**
 * What gossipsub tells of each message it receives on a topic: 'received' for every copy, then
 * 'duplicate' for each copy of a message it had already seen.
 */
export type GossipReceived = (topic: string, what: 'received' | 'duplicate') => void

const COUNTED: Record<string, 'received' | 'duplicate'> = {
  gossipsub_msg_received_prevalidation_total: 'received',
  gossipsub_pre_validation_duplicate_total: 'duplicate'
}

const noop = (): void => {}
const inert = { inc: noop, set: noop, addCollect: noop, observe: noop, reset: noop, startTimer: () => noop }

/**
 * A gossipsub metrics register that keeps only how many copies of messages arrive and tells
 * `onReceived`; gossipsub's other metrics (about a hundred gauges and histograms) are no-ops and never
 * collected. Copies per message, the cost gossip's redundancy puts on every node, is
 * received / (received − duplicate).
 */
export function gossipCounts(onReceived: GossipReceived): MetricsRegister {
  const gauge = (config: { name: string }): typeof inert => {
    const what = COUNTED[config.name]
    if (what == null) return inert
    return {
      ...inert,
      inc: (labels?: { topic?: string }, value = 1) => {
        for (let i = 0; i < value; i++) onReceived(labels?.topic ?? '', what)
      }
    }
  }
  // The register's methods are generic over label types that these counters do not need to know.
  return { gauge, histogram: () => inert, avgMinMax: () => inert } as unknown as MetricsRegister
}
