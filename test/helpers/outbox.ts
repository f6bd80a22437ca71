import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { silentLog } from '../../src/log/logger.ts'
import { Metrics } from '../../src/metrics/metrics.ts'
import { HybridClock } from '../../src/model/hlc.ts'
import { CairnEventBus } from '../../src/node/events.ts'
import { outbox, type Outbox, type OutboxInit } from '../../src/publish/outbox.ts'
import type { SqlDatabase } from '../../src/runtime/sqlite.ts'
import type { SqliteBlockstore } from '../../src/store/blockstore.ts'
import { Store } from '../../src/store/store.ts'

/** An outbox over a bare database and block store, signing with `privateKey`; listen on `events` for its commits. */
export function testOutbox(init: Omit<OutboxInit, 'privateKey'> & { db: SqlDatabase; blocks: SqliteBlockstore; privateKey: PrivateKey; events?: CairnEventBus }): Outbox {
  const { db, blocks, events, ...rest } = init
  return outbox(rest)({
    self: peerIdFromPrivateKey(init.privateKey).toString(),
    store: new Store(db),
    blocks,
    clock: new HybridClock(),
    log: silentLog,
    metrics: new Metrics(),
    events: events ?? new CairnEventBus()
  })
}
