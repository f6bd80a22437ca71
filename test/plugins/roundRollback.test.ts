import { describe, expect, test } from 'bun:test'
import { uuidv7 } from 'uuidv7'
import { openDatabase, type SqlDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { insertEvent } from '../../src/store/events.ts'
import { Store } from '../../src/store/store.ts'
import { pluginHost } from '../../src/plugins/host.ts'
import { silentLog } from '../../src/log/logger.ts'
import { Metrics } from '../../src/metrics/metrics.ts'
import { CairnEventBus } from '../../src/node/events.ts'
import { definePlugin, v } from '../../src/plugins/mod.ts'

const PRODUCER = '12D3KooWA1111111111111111111111111111111111111111111'
let seq = 0

function add(db: SqlDatabase, n: number): void {
  seq++
  insertEvent(
    db,
    {
      event_id: uuidv7(),
      type: 'test.count',
      version: 1,
      producer: PRODUCER,
      seq,
      hlc: `${Date.now()}-${(seq % 65536).toString(16).padStart(4, '0')}`,
      occurred_at: new Date().toISOString(),
      payload: { n }
    },
    'bafy',
    Date.now()
  )
}

describe('an apply whose statement makes SQLite roll back the whole transaction (ON CONFLICT ROLLBACK, RAISE(ROLLBACK))', () => {
  test('costs only its own event: the events applied before it in the round are kept, every other event is applied once', async () => {
    const db = await openDatabase(':memory:')
    migrate(db)
    const store = new Store(db)
    const plugin = definePlugin({
      name: 'strict',
      handles: { 'test.count': { version: 1, payload: v.object({ n: v.number() }) } },
      migrations: ['CREATE TABLE strict_rows (n INTEGER PRIMARY KEY ON CONFLICT ROLLBACK, applied INTEGER NOT NULL)'],
      apply(event, { db }) {
        db.run('INSERT INTO strict_rows (n, applied) VALUES (?, 1)', [(event.payload as { n: number }).n])
      }
    })
    // The fourth event repeats n = 2: its insert rolls back whatever transaction it runs in.
    for (const n of [1, 2, 3, 2, 5]) add(db, n)
    const host = pluginHost({ plugins: [{ plugin, source: 'test' }], backoffMs: 5, maxAttempts: 3 })({ store, log: silentLog, metrics: new Metrics(), events: new CairnEventBus() })
    await host.start()
    await host.drain()
    await host.stop()
    expect(db.all('SELECT n, applied FROM strict_rows ORDER BY n')).toEqual([
      { n: 1, applied: 1 },
      { n: 2, applied: 1 },
      { n: 3, applied: 1 },
      { n: 5, applied: 1 }
    ])
    expect(db.get('SELECT count(*) AS n FROM plugin_applied')).toEqual({ n: 4 })
    expect(store.pluginState.deadLetters().map((d) => d.attempts)).toEqual([3])
    expect(store.events.lowestPendingCursor()).toBeUndefined()
  }, 30_000)
})
