import { describe, expect, test } from 'bun:test'
import { uuidv7 } from 'uuidv7'
import { openDatabase, type SqlDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { insertEvent } from '../../src/store/events.ts'
import { Store } from '../../src/store/store.ts'
import { pluginHost, type PluginHost } from '../../src/plugins/host.ts'
import { requestReplay } from '../../src/plugins/replay.ts'
import { silentLog } from '../../src/log/logger.ts'
import { Metrics } from '../../src/metrics/metrics.ts'
import { CairnEventBus } from '../../src/node/events.ts'
import { definePlugin, v, type Plugin } from '../../src/plugins/mod.ts'
import { waitFor } from '../helpers/process.ts'

const PRODUCER = '12D3KooWA1111111111111111111111111111111111111111111'
let seq = 0

function add(db: SqlDatabase, n: number): string {
  const id = uuidv7()
  seq++
  insertEvent(
    db,
    {
      event_id: id,
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
  return id
}

async function database(): Promise<SqlDatabase> {
  const db = await openDatabase(':memory:')
  migrate(db)
  return db
}

async function run(db: SqlDatabase, plugin: Plugin): Promise<PluginHost> {
  const host = pluginHost({ plugins: [{ plugin, source: 'test' }], backoffMs: 5, maxAttempts: 3 })({ store: new Store(db), log: silentLog, metrics: new Metrics(), events: new CairnEventBus() })
  await host.start()
  await host.drain()
  return host
}

describe('what the plugin host keeps in memory between rounds', () => {
  test('an effect queued after a round that found none due still runs', async () => {
    const db = await database()
    const ran: number[] = []
    const plugin = definePlugin({
      name: 'notifier',
      handles: { 'test.count': { version: 1, payload: v.object({ n: v.number() }) } },
      apply() {},
      async effect(event) {
        ran.push((event.payload as { n: number }).n)
      }
    })
    add(db, 1)
    const host = await run(db, plugin)
    expect(ran).toEqual([1])
    add(db, 2)
    host.notify()
    await waitFor('the second effect', () => ran.length === 2, 10_000)
    await host.stop()
    expect(ran).toEqual([1, 2])
  })

  test('a replayed event that fails again is retried and dead-lettered again, though no retry was due before the replay', async () => {
    const db = await database()
    const plugin = definePlugin({
      name: 'broken',
      handles: { 'test.count': { version: 1, payload: v.object({ n: v.number() }) } },
      apply() {
        throw new Error('the backend is down')
      }
    })
    add(db, 1)
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
    const db = await database()
    const plugin = definePlugin({ name: 'counter', handles: { 'test.count': { version: 1, payload: v.object({ n: v.number() }) } }, apply() {} })
    for (let n = 0; n < 3; n++) add(db, n)
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
