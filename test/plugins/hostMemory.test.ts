import { describe, expect, test } from 'bun:test'
import { addCount, COUNT_PRODUCER, memoryDatabase } from '../helpers/events.ts'
import type { SqlDatabase } from '../../src/runtime/sqlite.ts'
import type { EventRow, EventsTable } from '../../src/store/events.ts'
import { Store } from '../../src/store/store.ts'
import { pluginHost, type PluginHost } from '../../src/plugins/host.ts'
import { requestReplay } from '../../src/plugins/replay.ts'
import { silentLog } from '../../src/log/logger.ts'
import { Metrics } from '../../src/metrics/metrics.ts'
import { CairnEventBus } from '../../src/node/events.ts'
import { definePlugin, v, type Plugin } from '../../src/plugins/mod.ts'
import { streamEvents } from '../../src/http/stream.ts'
import { readSse, type SseMessage } from '../../src/client/sse.ts'
import { waitFor } from '../helpers/process.ts'

async function run(db: SqlDatabase, plugin: Plugin): Promise<PluginHost> {
  const host = pluginHost({ plugins: [{ plugin, source: 'test' }], backoffMs: 5, maxAttempts: 3 })({ store: new Store(db), log: silentLog, metrics: new Metrics(), events: new CairnEventBus() })
  await host.start()
  await host.drain()
  return host
}

describe('what the plugin host keeps in memory between rounds', () => {
  test('an effect queued after a round that found none due still runs', async () => {
    const db = await memoryDatabase()
    const ran: number[] = []
    const plugin = definePlugin({
      name: 'notifier',
      handles: { 'test.count': { version: 1, payload: v.object({ n: v.number() }) } },
      apply() {},
      async effect(event) {
        ran.push((event.payload as { n: number }).n)
      }
    })
    addCount(db, 1)
    const host = await run(db, plugin)
    expect(ran).toEqual([1])
    addCount(db, 2)
    host.notify()
    await waitFor('the second effect', () => ran.length === 2, 10_000)
    await host.stop()
    expect(ran).toEqual([1, 2])
  })

  test('a replayed event that fails again is retried and dead-lettered again, though no retry was due before the replay', async () => {
    const db = await memoryDatabase()
    const plugin = definePlugin({
      name: 'broken',
      handles: { 'test.count': { version: 1, payload: v.object({ n: v.number() }) } },
      apply() {
        throw new Error('the backend is down')
      }
    })
    addCount(db, 1)
    const store = new Store(db)
    const host = await run(db, plugin)
    await waitFor('the dead letter', () => store.pluginState.deadLetterCount() === 1 && store.pluginState.retryingCount() === 0, 10_000)
    await host.drain()
    const first = store.pluginState.deadLetters()[0].dead_at
    expect(requestReplay(store, { dead: true })).toBe(1)
    host.notify()
    // Dead-lettered again only after its retries ran: a retry the host did not know of would wait forever.
    await waitFor('the second dead letter', () => store.pluginState.retryingCount() === 0 && store.pluginState.deadLetters()[0]?.dead_at !== first, 10_000)
    await host.stop()
    expect(store.pluginState.deadLetters().map((d) => ({ attempts: d.attempts, error: d.error }))).toEqual([{ attempts: 3, error: 'the backend is down' }])
  })

  test('the watermark falls at once when a cursor is rewound outside a round, as loading a snapshot does', async () => {
    const db = await memoryDatabase()
    const plugin = definePlugin({ name: 'counter', handles: { 'test.count': { version: 1, payload: v.object({ n: v.number() }) } }, apply() {} })
    for (let n = 0; n < 3; n++) addCount(db, n)
    const host = await run(db, plugin)
    const store = new Store(db)
    const top = store.events.maxCursor()
    expect(host.watermark()).toBe(top)
    store.pluginState.rewind('counter')
    expect(host.watermark()).toBe(0)
    host.notify()
    await host.drain()
    expect(host.watermark()).toBe(top)
    await host.stop()
  })
})

describe('GET /v1/stream reads the table only when the watermark moved', () => {
  test('a wake-up without a new watermark reads nothing; a new one delivers the row', async () => {
    const rows: EventRow[] = []
    const row = (cursor: number): EventRow => ({
      cursor,
      event_id: `e${cursor}`,
      producer: COUNT_PRODUCER,
      seq: cursor,
      type: 'test.count',
      version: 1,
      hlc: '0',
      occurred_at: '2026-01-01T00:00:00.000Z',
      actor: null,
      correlation_id: null,
      causation_id: null,
      payload: '{}',
      cid: 'bafy',
      received_at: 0,
      state: 'done'
    })
    rows.push(row(1), row(2))
    let mark = 2
    let reads = 0
    const events = {
      cursorSpace: () => 'space',
      highWater: () => rows.length,
      list: (q: { after?: number; upTo?: number; limit: number }) => {
        reads++
        return rows.filter((r) => r.cursor > (q.after ?? 0) && r.cursor <= (q.upTo ?? Infinity)).slice(0, q.limit)
      }
    } as unknown as EventsTable
    const waiters: Array<(woke: boolean) => void> = []
    const res = streamEvents(new Request('http://127.0.0.1/v1/stream'), {
      events,
      watermark: () => mark,
      wait: async () => await new Promise<boolean>((resolve) => waiters.push(resolve)),
      heartbeatMs: 60_000
    })
    const seen: SseMessage[] = []
    const messages = readSse(res.body!)
    const next = async (): Promise<SseMessage> => {
      const m = (await messages.next()).value as SseMessage
      seen.push(m)
      return m
    }
    while ((await next()).event !== 'caught-up');
    expect(reads).toBe(1)
    const reading = next()
    await waitFor('the stream waiting', () => waiters.length === 1, 5_000, 1)
    waiters[0](true)
    await waitFor('the stream waiting again', () => waiters.length === 2, 5_000, 1)
    expect(reads).toBe(1)
    rows.push(row(3))
    mark = 3
    waiters[1](true)
    expect((await reading).id).toBe('3')
    expect(reads).toBe(2)
    expect(seen.filter((m) => m.event == null).map((m) => m.id)).toEqual(['1', '2', '3'])
    await messages.return(undefined)
  })
})
