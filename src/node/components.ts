import type { Log } from '../log/logger.ts'
import type { Metrics } from '../metrics/metrics.ts'
import type { HybridClock } from '../model/hlc.ts'
import type { SqliteBlockstore } from '../store/blockstore.ts'
import type { Store } from '../store/store.ts'
import type { CairnEventBus } from './events.ts'

/**
 * What every service of a node is built from, as js-libp2p hands its services `components`. A service
 * lists the fields it uses (`Pick<Components, 'store' | 'log'>`); the node builds them once.
 */
export interface Components {
  /** this node's peer id: the producer name of its own events */
  self: string
  store: Store
  blocks: SqliteBlockstore
  log: Log
  metrics: Metrics
  clock: HybridClock
  events: CairnEventBus
}

/** The one lifecycle of every service: `start()` then `stop()`, each safe to call twice. */
export interface Startable {
  start(): void | Promise<void>
  stop(): void | Promise<void>
}
