import { expect, test } from 'bun:test'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { Store } from '../../src/store/store.ts'
import { storedStatus } from '../../src/node/status.ts'

test("a producer's applied seq stays below an event a plugin retries, while its stored seq goes on", async () => {
  const db = await openDatabase(':memory:')
  migrate(db)
  const store = new Store(db)
  const producer = 'p'
  store.producers.putHead({ producer, seq: 7, root: 'bafkqaaa', hlc: '1800000000000-0000', acks: {}, signed: new Uint8Array(), receivedAt: 0 })
  const ids: string[] = []
  for (let seq = 1; seq <= 7; seq++) {
    const event_id = `0190a000-0000-7000-8000-00000000000${seq}`
    ids.push(event_id)
    store.events.add({ event_id, type: 't.x', version: 1, producer, seq, hlc: `180000000000${seq}-0000`, occurred_at: new Date(0).toISOString(), payload: {} }, 'cid', 0)
  }
  store.producers.advance(producer, 7)
  // Plugin q's apply of seq 5 failed and waits for a retry; every other event is done.
  store.pluginState.recordFailure('q', { producer, event_id: ids[4] }, 1, 'boom', Date.now() + 60_000)
  store.events.markDone(Number.MAX_SAFE_INTEGER, ['q'])

  const [p] = storedStatus(store).producers
  expect({ processed_seq: p.processed_seq, applied_seq: p.applied_seq, lag_events: p.lag_events }).toEqual({ processed_seq: 7, applied_seq: 4, lag_events: 0 })
  expect(store.acks()[producer]).toBe(4)
})
