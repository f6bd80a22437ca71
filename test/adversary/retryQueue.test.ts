import { describe, expect, test } from 'bun:test'
import { uuidv7 } from 'uuidv7'
import { silentLog } from '../../src/log/logger.ts'
import { Metrics } from '../../src/metrics/metrics.ts'
import { CairnEventBus, waitFor } from '../../src/node/events.ts'
import { pluginHost } from '../../src/plugins/host.ts'
import { definePlugin, v } from '../../src/plugins/mod.ts'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { Store } from '../../src/store/store.ts'

const P = '12D3KooWLRPJAA5o6Z6ZKHCxnVMZgS1VpaSrCNB2Xo1PKzYqj6Ho'
const ok = definePlugin({ name: 'ok', handles: { 'test.item': { version: 1, payload: v.object({}) } }, migrations: [], apply() {} })

async function storeWith(n: number): Promise<{ store: Store; ids: string[] }> {
  const db = await openDatabase(':memory:')
  migrate(db)
  const store = new Store(db)
  const now = Date.now()
  const ids = Array.from({ length: n }, () => uuidv7())
  for (const [i, id] of ids.entries()) {
    store.events.insert({ event_id: id, type: 'test.item', version: 1, producer: P, seq: i + 1, hlc: `${now}-0000`, occurred_at: new Date(now).toISOString(), payload: {} }, 'bafy', now)
  }
  return { store, ids }
}

describe('the plugin retry queue', () => {
  test('a retry of an event this node no longer holds neither keeps the host busy nor blocks idleness', async () => {
    const { store } = await storeWith(3)
    // A failure whose event is gone: deleted by --events-retention while its retry waited, or from before events were keyed by producer.
    store.db.run("INSERT INTO plugin_failures (plugin, producer, event_id, attempts, last_error, next_at) VALUES ('ok', '', 'gone', 1, 'x', 0)")
    const events = new CairnEventBus()
    const host = pluginHost({ plugins: [{ plugin: ok, source: 'test' }] })({ store, log: silentLog, metrics: new Metrics(), events })
    const idle = waitFor(events, 'plugins:idle', { signal: AbortSignal.timeout(10_000) })
    await host.start()
    await idle
    expect({ watermark: host.watermark(), retrying: store.pluginState.retryingCount() }).toEqual({ watermark: 3, retrying: 0 })
    await host.stop()
    store.close()
  })

  test('a retry left by a plugin that is no longer loaded does not hold its event pending', async () => {
    const { store, ids } = await storeWith(2)
    store.db.run("INSERT INTO plugin_failures (plugin, producer, event_id, attempts, last_error, next_at) VALUES ('removed', ?, ?, 1, 'x', 0)", [P, ids[0]])
    const host = pluginHost({ plugins: [{ plugin: ok, source: 'test' }] })({ store, log: silentLog, metrics: new Metrics(), events: new CairnEventBus() })
    await host.start()
    await host.drain({ signal: AbortSignal.timeout(10_000) })
    expect({ watermark: host.watermark(), pending: store.events.pendingCount(), acks: store.acks() }).toEqual({ watermark: 2, pending: 0, acks: {} })
    await host.stop()
    store.close()
  })
})
