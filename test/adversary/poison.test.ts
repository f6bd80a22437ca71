import { describe, expect, test } from 'bun:test'
import { uuidv7 } from 'uuidv7'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { Store } from '../../src/store/store.ts'
import { pluginHost } from '../../src/plugins/host.ts'
import { definePlugin, v } from '../../src/plugins/mod.ts'
import { silentLog } from '../../src/log/logger.ts'
import { Metrics } from '../../src/metrics/metrics.ts'
import { CairnEventBus } from '../../src/node/events.ts'
import { waitFor } from '../helpers/process.ts'

const PRODUCER = '12D3KooWA1111111111111111111111111111111111111111111'
const MAX_ATTEMPTS = 5

/** Counts each apply of a good event; throws (a non-permanent failure) on a poison one. */
const picky = definePlugin({
  name: 'picky',
  handles: { 'test.item': { version: 1, payload: v.object({ poison: v.boolean() }) } },
  migrations: ['CREATE TABLE picked (event_id TEXT PRIMARY KEY, n INTEGER NOT NULL)'],
  apply(event, { db }) {
    if (event.payload.poison) throw new Error('cannot apply this one yet')
    db.run('INSERT INTO picked (event_id, n) VALUES (?, 1) ON CONFLICT (event_id) DO UPDATE SET n = n + 1', [event.event_id])
  }
})

describe('a burst of poison events does not stall a plugin', () => {
  test('20 poison events then 100 good ones: the good ones are applied while every poison one still has attempts left; each poison one is dead-lettered after its attempts; exactly once', async () => {
    const db = await openDatabase(':memory:')
    migrate(db)
    const store = new Store(db)
    // The plugin host's clock stands still unless the test moves it: no retry is due until then.
    let clock = 1_000_000
    const host = pluginHost({ plugins: [{ plugin: picky, source: 'test' }], maxAttempts: MAX_ATTEMPTS, backoffMs: 200, now: () => clock })({
      store,
      log: silentLog,
      metrics: new Metrics(),
      events: new CairnEventBus()
    })
    const add = (seq: number, poison: boolean): void => {
      store.events.insert(
        { event_id: uuidv7(), type: 'test.item', version: 1, producer: PRODUCER, seq, hlc: `${clock}-0000`, occurred_at: new Date(clock).toISOString(), payload: { poison } },
        'bafy',
        clock
      )
    }
    for (let i = 1; i <= 20; i++) add(i, true)
    for (let i = 21; i <= 120; i++) add(i, false)
    await host.start()
    try {
      const picked = (): number => db.get<{ n: number }>('SELECT count(*) AS n FROM picked')?.n ?? 0
      await waitFor('the 100 good events applied', () => picked() === 100)
      // Not one poison event has been retried, let alone run out of attempts: the good ones did not wait for them.
      const failures = db.all<{ attempts: number }>('SELECT attempts FROM plugin_failures')
      expect(failures.length).toBe(20)
      for (const f of failures) expect(f.attempts).toBe(1)
      expect(store.pluginState.deadLetterCount()).toBe(0)
      // The good rows are done (acks and housekeeping move on); the poison ones hold back only themselves.
      expect(store.events.pendingCount()).toBe(20)
      expect(store.acks()[PRODUCER] ?? 0).toBe(0)
      expect(host.watermark()).toBe(0)

      // Time passes: each poison event is retried when due, and dead-lettered after its attempts.
      for (let round = 0; round < MAX_ATTEMPTS && store.pluginState.deadLetterCount() < 20; round++) {
        clock += 3_600_000
        host.notify()
        await waitFor(
          `retry round ${round + 1}`,
          () => db.all<{ attempts: number }>('SELECT attempts FROM plugin_failures').every((f) => f.attempts > round + 1) || store.pluginState.deadLetterCount() === 20
        )
      }
      await waitFor('20 dead letters', () => store.pluginState.deadLetterCount() === 20)
      expect(store.pluginState.deadLetters().map((d) => d.attempts)).toEqual(Array(20).fill(MAX_ATTEMPTS))
      await waitFor('every row done', () => store.events.pendingCount() === 0)
      expect(host.watermark()).toBe(120)
      // Exactly once: every good event applied once, none twice.
      expect(db.get('SELECT count(*) AS rows, sum(n = 1) AS once FROM picked')).toEqual({ rows: 100, once: 100 })
      expect(db.get('SELECT count(*) AS n FROM plugin_applied')).toEqual({ n: 100 })
    } finally {
      await host.stop()
      store.close()
    }
  })
})
