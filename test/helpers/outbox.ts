import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { silentLog } from '../../src/log/logger.ts'
import { Metrics } from '../../src/metrics/metrics.ts'
import { HybridClock } from '../../src/model/hlc.ts'
import { CairnEventBus } from '../../src/node/events.ts'
import { outbox, type Outbox, type OutboxInit } from '../../src/publish/outbox.ts'
import { openDatabase, type SqlDatabase } from '../../src/runtime/sqlite.ts'
import { openBlockDatabase, SqliteBlockstore } from '../../src/store/blockstore.ts'
import { migrate } from '../../src/store/migrations.ts'
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

/**
 * A new identity's outbox over fresh in-memory databases (cairn.db migrated, blocks.db), with the limits most
 * tests use; `init` adds to or replaces its settings.
 */
export async function memoryOutbox(init: Partial<Omit<OutboxInit, 'privateKey'>> = {}) {
  const privateKey = await generateKeyPair('Ed25519')
  const db = await openDatabase(':memory:')
  migrate(db)
  const blocks = new SqliteBlockstore(await openBlockDatabase(':memory:'))
  const outbox = testOutbox({ db, blocks, privateKey, maxBatch: 100, maxEventSize: 4096, maxDepth: 16, ...init })
  return { privateKey, self: peerIdFromPrivateKey(privateKey).toString(), db, blocks, store: new Store(db), outbox }
}
