import { describe, expect, test } from 'bun:test'
import { uuidv7 } from 'uuidv7'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { Store } from '../../src/store/store.ts'
import { insertEvent } from '../../src/store/events.ts'
import { Membership } from '../../src/members/membership.ts'
import { CairnEventBus } from '../../src/node/events.ts'
import { silentLog } from '../../src/log/logger.ts'
import { MEMBERS_TYPE, OWNERS_KEY } from '../../src/model/members.ts'
import type { EventEnvelope } from '../../src/model/envelope.ts'
import { fakePeerId } from '../adversary/helpers.ts'

const SELF = fakePeerId(1)
const OWNER = fakePeerId(2)
const OTHER = fakePeerId(3)
const X = fakePeerId(4)

describe('the membership tells the node only of changes that alter it', () => {
  test('a change that alters nothing (a repeat, or one from a producer that is no owner) pushes no heads', async () => {
    const db = await openDatabase(':memory:')
    migrate(db)
    const store = new Store(db)
    store.meta.put(OWNERS_KEY, JSON.stringify([OWNER]))
    const events = new CairnEventBus()
    let changes = 0
    const membership = new Membership(
      {
        publish: async () => {
          throw new Error('not published here')
        },
        onChange: () => {
          changes++
        }
      },
      { self: SELF, store, events, log: silentLog }
    )
    membership.start()
    const seqs = new Map<string, number>()
    const ingest = (producer: string, payload: unknown): void => {
      const seq = (seqs.get(producer) ?? 0) + 1
      seqs.set(producer, seq)
      const e: EventEnvelope = { event_id: uuidv7(), type: MEMBERS_TYPE, version: 1, producer, seq, hlc: `${1800000000000 + seq}-0000`, occurred_at: new Date().toISOString(), payload }
      insertEvent(db, e, 'bafy', Date.now())
      events.safeDispatchEvent('events:ingested', { detail: [e] })
    }
    ingest(OWNER, { op: 'add', peer_id: X, role: 'member' })
    expect(changes).toBe(1)
    expect(membership.isMember(X)).toBe(true)
    // the same add again: the members are as they were
    ingest(OWNER, { op: 'add', peer_id: X, role: 'member' })
    expect(changes).toBe(1)
    // a member's change changes nothing (the fold does not read it)
    ingest(X, { op: 'add', peer_id: OTHER, role: 'owner' })
    expect(changes).toBe(1)
    expect(membership.isMember(OTHER)).toBe(false)
    ingest(OWNER, { op: 'remove', peer_id: X, last_seq: 1 })
    expect(changes).toBe(2)
    membership.stop()
  })
})

describe('a member waits for the changes of owners it had seen', () => {
  test('but not for those of a peer whose owner role never took effect here: none of its events is ever taken', async () => {
    const db = await openDatabase(':memory:')
    migrate(db)
    const store = new Store(db)
    store.meta.put(OWNERS_KEY, JSON.stringify([OWNER]))
    const events = new CairnEventBus()
    const membership = new Membership({ publish: async () => Promise.reject(new Error('not published here')) }, { self: SELF, store, events, log: silentLog })
    membership.start()
    const ingest = (producer: string, seq: number, ms: number, payload: unknown): void => {
      const e: EventEnvelope = { event_id: uuidv7(), type: MEMBERS_TYPE, version: 1, producer, seq, hlc: `${1800000000000 + ms}-0000`, occurred_at: new Date().toISOString(), payload }
      insertEvent(db, e, 'bafy', Date.now())
      events.safeDispatchEvent('events:ingested', { detail: [e] })
    }
    const M = fakePeerId(5)
    ingest(OWNER, 1, 10, { op: 'add', peer_id: OTHER, role: 'owner' })
    ingest(OWNER, 2, 11, { op: 'add', peer_id: M, role: 'member' })
    // OTHER makes X an owner a moment before OWNER removes it having not seen that: the change is void.
    ingest(OTHER, 1, 20, { op: 'add', peer_id: X, role: 'owner' })
    ingest(OWNER, 3, 30, { op: 'remove', peer_id: OTHER, last_seq: 0 })
    expect(membership.isMember(X)).toBe(false)
    // M took X's events where the change had taken effect for a while, and acknowledges them.
    expect(membership.waitFor(M, { [X]: 3, [OWNER]: 3 }, { [OWNER]: 3 })).toBeUndefined()
    expect(membership.waitFor(M, { [OWNER]: 3 }, { [OWNER]: 2 })).toEqual({ owner: OWNER, seq: 3 })
    membership.stop()
  })
})
