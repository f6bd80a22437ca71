import { describe, expect, test } from 'bun:test'
import { CID } from 'multiformats/cid'
import { housekeeper } from '../../src/housekeeping/housekeeper.ts'
import { silentLog } from '../../src/log/logger.ts'
import { Metrics } from '../../src/metrics/metrics.ts'
import { walkDag } from '../../src/unixfs/walk.ts'
import { memoryOutbox } from '../helpers/outbox.ts'

/** An outbox and its housekeeper over in-memory databases; `options` adds to the housekeeper's settings. */
async function setup(options: { eventsRetention?: number; now?: () => number } = {}) {
  const { self, db, blocks, outbox, store } = await memoryOutbox()
  const hk = housekeeper({ outbox, retention: 3_600_000, retentionMax: 7_200_000, members: () => undefined, processed: () => 0, ...options })({
    self,
    store,
    blocks,
    log: silentLog,
    metrics: new Metrics()
  })
  return { db, blocks, outbox, store, hk }
}

describe('housekeeping', () => {
  test('a collection while a commit is under way keeps the blocks the commit wrote before its head', async () => {
    const { blocks, outbox, store, hk } = await setup()
    await outbox.publish({ type: 'test.first', payload: {} })
    // The commit below holds between its blocks and its head (where it awaits the head's signature) long
    // enough for a housekeeping run started then to reach its collection.
    const o = outbox as unknown as { writeHead: (...a: unknown[]) => Promise<void> }
    const writeHead = o.writeHead.bind(outbox)
    let run: Promise<unknown> | undefined
    o.writeHead = async (...a) => {
      run = hk.run()
      for (let i = 0; i < 50; i++) await new Promise((resolve) => setImmediate(resolve))
      return await writeHead(...a)
    }
    await outbox.publish({ type: 'test.second', payload: {} })
    expect(await run).not.toHaveProperty('error')
    const missing = [...walkDag([CID.parse(store.outbox.root()!)], (cid) => blocks.getSync(cid))].filter((s) => s.kind === 'missing')
    expect(missing).toEqual([])
  })

  test('rows of events stay while blocks.db cannot be synced: a start may still rebuild the last commits from them', async () => {
    const at = Date.now() + 60_000
    const { db, blocks, outbox, hk } = await setup({ eventsRetention: 1000, now: () => at })
    await outbox.publish({ type: 'test.first', payload: {} })
    db.run("UPDATE events SET state = 'done'")
    blocks.sync = () => {
      throw new Error('EIO')
    }
    const result = await hk.run()
    expect(result.error).toContain('cannot sync blocks.db')
    expect(result.events_deleted).toBe(0)
    expect(db.get<{ n: number }>('SELECT count(*) AS n FROM events')?.n).toBe(1)
    await outbox.stop()
  })

  test('the rows of events it deletes take their effects that ran or were given up with them', async () => {
    const at = Date.now() + 60_000
    const { db, outbox, hk, store } = await setup({ eventsRetention: 1000, now: () => at })
    const published = await outbox.publish({ type: 'test.first', payload: {} })
    db.run("UPDATE events SET state = 'done'")
    const self = db.get<{ producer: string }>('SELECT producer FROM events')?.producer ?? ''
    db.run('INSERT INTO plugin_effects (plugin, producer, event_id, next_at) VALUES (?, ?, ?, ?)', ['gated', self, published.event_id, 0])
    store.pluginState.effectGaveUp('gated', { producer: self, event_id: published.event_id }, 1, 'the remote is down', at)
    expect(store.pluginState.effectCounts().gaveUp).toBe(1)
    const result = await hk.run()
    expect(result.events_deleted).toBe(1)
    expect(store.pluginState.effectCounts().gaveUp).toBe(0)
    expect(db.get<{ n: number }>('SELECT count(*) AS n FROM plugin_effects')?.n).toBe(0)
    await outbox.stop()
  })
})
