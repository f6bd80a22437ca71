import { uuidv7 } from 'uuidv7'
import { Membership, type MembershipInit } from '../../src/members/membership.ts'
import { silentLog } from '../../src/log/logger.ts'
import type { EventEnvelope } from '../../src/model/envelope.ts'
import { MEMBERS_TYPE, OWNERS_KEY } from '../../src/model/members.ts'
import { CairnEventBus } from '../../src/node/events.ts'
import { openDatabase, type SqlDatabase } from '../../src/runtime/sqlite.ts'
import { insertEvent } from '../../src/store/events.ts'
import { migrate } from '../../src/store/migrations.ts'
import { Store } from '../../src/store/store.ts'

/**
 * A started membership of node `self` with founder `owner`, over an in-memory store, and ways to feed it
 * changes as ingest does. It publishes nothing (`init` may add what else it needs, such as onChange).
 */
export async function membershipOver(
  owner: string,
  self: string,
  init: Partial<MembershipInit> = {}
): Promise<{
  db: SqlDatabase
  store: Store
  events: CairnEventBus
  membership: Membership
  /** a change of `producer` at `seq`, stamped `ms` after a fixed moment */
  change: (producer: string, seq: number, ms: number, payload: unknown) => EventEnvelope
  /** stores the envelopes in one transaction and tells the membership, as one ingest chunk does */
  ingest: (...es: EventEnvelope[]) => void
}> {
  const db = await openDatabase(':memory:')
  migrate(db)
  const store = new Store(db)
  store.meta.put(OWNERS_KEY, JSON.stringify([owner]))
  const events = new CairnEventBus()
  const membership = new Membership({ publish: async () => Promise.reject(new Error('not published here')), ...init }, { self, store, events, log: silentLog })
  membership.start()
  const change = (producer: string, seq: number, ms: number, payload: unknown): EventEnvelope => ({
    event_id: uuidv7(),
    type: MEMBERS_TYPE,
    version: 1,
    producer,
    seq,
    hlc: `${1800000000000 + ms}-0000`,
    occurred_at: new Date().toISOString(),
    payload
  })
  const ingest = (...es: EventEnvelope[]): void => {
    store.transaction(() => {
      for (const e of es) insertEvent(db, e, 'bafy', Date.now())
    })
    events.safeDispatchEvent('events:ingested', { detail: es })
  }
  return { db, store, events, membership, change, ingest }
}
