import { describe, expect, test } from 'bun:test'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { insertEvent } from '../../src/store/events.ts'
import { MIGRATIONS, migrate } from '../../src/store/migrations.ts'
import { Store } from '../../src/store/store.ts'

const P = ['12D3KooWA1111111111111111111111111111111111111111111', '12D3KooWB2222222222222222222222222222222222222222222']

describe("the events table's indexes (migration 8)", () => {
  test('a database of schema 7 keeps its rows and states; the pending rows are found through the index of pending rows alone', async () => {
    const db = await openDatabase(':memory:')
    migrate(db, MIGRATIONS.slice(0, 7))
    for (let i = 1; i <= 40; i++) {
      const producer = P[i % 2]
      insertEvent(
        db,
        {
          event_id: `00000000-0000-7000-8000-${String(i).padStart(12, '0')}`,
          type: 't.x',
          version: 1,
          producer,
          seq: Math.ceil(i / 2),
          hlc: `${i}`,
          occurred_at: new Date(0).toISOString(),
          payload: {}
        },
        'bafy',
        0
      )
    }
    const store = new Store(db)
    // Done up to cursor 30 on schema 7, then migrated.
    store.events.markDone(30, [])
    expect(migrate(db)).toBe(MIGRATIONS.length)
    const indexes = db.all<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL ORDER BY name").map((r) => r.name)
    expect(indexes).toEqual(['events_event_id', 'events_membership', 'events_pending', 'events_producer_seq', 'events_type'])
    expect({ pending: store.events.pendingCount(), done: store.events.doneCount(), lowest: store.events.lowestPendingCursor() }).toEqual({ pending: 10, done: 30, lowest: 31 })
    expect(Object.fromEntries(store.events.lowestPending())).toEqual({ [P[1]]: 16, [P[0]]: 16 })
    store.events.markDone(35, [])
    expect({ pending: store.events.pendingCount(), done: store.events.doneCount(), lowest: store.events.lowestPendingCursor() }).toEqual({ pending: 5, done: 35, lowest: 36 })
    // However many rows are done, what plugins wait on is read from the pending rows only.
    const plan = (sql: string): string =>
      db
        .all<{ detail: string }>(`EXPLAIN QUERY PLAN ${sql}`)
        .map((r) => r.detail)
        .join(' | ')
    expect(plan("SELECT min(cursor) FROM events WHERE state = 'pending'")).toContain('events_pending')
    expect(plan("SELECT producer, min(seq) FROM events INDEXED BY events_pending WHERE state = 'pending' GROUP BY producer")).toContain('events_pending')
    expect(plan("UPDATE events SET state = 'done' WHERE state = 'pending' AND cursor <= 5")).toContain('events_pending')
  })
})
