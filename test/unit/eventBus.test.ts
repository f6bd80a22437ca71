import { describe, expect, test } from 'bun:test'
import { CairnEventBus, waitFor } from '../../src/node/events.ts'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { Store } from '../../src/store/store.ts'
import { migrate } from '../../src/store/migrations.ts'

describe('the event bus', () => {
  test('a listener that throws is reported to the bus and does not unwind the dispatcher', () => {
    const reported: string[] = []
    const bus = new CairnEventBus((err, type) => reported.push(`${type}: ${err.message}`))
    const seen: string[] = []
    bus.listen('sync:idle', () => {
      throw new Error('broken listener')
    })
    bus.listen('sync:idle', () => seen.push('second'))
    expect(() => bus.safeDispatchEvent('sync:idle', {})).not.toThrow()
    expect({ reported, seen }).toEqual({ reported: ['sync:idle: broken listener'], seen: ['second'] })
  })

  test('listen returns a function that stops listening', () => {
    const bus = new CairnEventBus()
    const seen: number[] = []
    const stop = bus.listen('events:ingested', (events) => seen.push(events.length))
    bus.safeDispatchEvent('events:ingested', { detail: [] })
    stop()
    bus.safeDispatchEvent('events:ingested', { detail: [] })
    expect(seen).toEqual([0])
  })

  test('waitFor resolves with the detail of the next event and rejects when its signal aborts', async () => {
    const bus = new CairnEventBus()
    const next = waitFor(bus, 'sync:progress')
    bus.safeDispatchEvent('sync:progress', { detail: { producer: 'p', done: 1, total: 2, rate: 1, eta_s: 1 } })
    expect(await next).toEqual({ producer: 'p', done: 1, total: 2, rate: 1, eta_s: 1 })
    const abort = new AbortController()
    const never = waitFor(bus, 'sync:idle', { signal: abort.signal })
    abort.abort(new Error('gave up'))
    await expect(never).rejects.toThrow('gave up')
  })
})

describe('the events table', () => {
  test('list() with an empty list of types returns no rows; without types, every row', async () => {
    const db = await openDatabase(':memory:')
    migrate(db)
    const store = new Store(db)
    const producer = '12D3KooWLRPJAA5o6Z6ZKHCxnVMZgS1VpaSrCNB2Xo1PKzYqj6Ho'
    store.events.insert({ event_id: '0190b2a4-0000-7000-8000-000000000001', type: 'a.b', version: 1, producer, seq: 1, hlc: '1-0000', occurred_at: new Date(0).toISOString(), payload: {} }, 'bafy', 0)
    expect({ none: store.events.list({ types: [], limit: 10 }).length, all: store.events.list({ limit: 10 }).length }).toEqual({ none: 0, all: 1 })
    store.close()
  })
})
