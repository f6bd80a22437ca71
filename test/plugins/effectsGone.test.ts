import { expect, test } from 'bun:test'
import { join } from 'node:path'
import { Store } from '../../src/store/store.ts'
import { tempDir } from '../helpers/process.ts'

// A given-up effect whose event events-retention deleted could be neither listed (cairn dead --effects) nor
// replayed, and stayed counted in status and cairn_effects_given_up for good.
test('effects that ran or were given up are forgotten with their events; the others stay', async () => {
  using tmp = tempDir()
  const store = await Store.open(join(tmp.path, 'cairn.db'))
  try {
    const producer = '12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'
    const e = {
      event_id: '0190aaaa-0000-7000-8000-000000000001',
      producer,
      seq: 1,
      type: 'test.gated',
      version: 1,
      hlc: '1700000000000-0000',
      occurred_at: new Date(0).toISOString(),
      payload: {}
    }
    store.events.insert(e as never, 'bafy', 1000)
    store.db.run("UPDATE events SET state = 'done'")
    store.db.run('INSERT INTO plugin_effects (plugin, producer, event_id, next_at) VALUES (?, ?, ?, ?)', ['gated', producer, e.event_id, 0])
    store.pluginState.effectGaveUp('gated', { producer, event_id: e.event_id }, 1, 'the remote is down', 2000)
    // Another given-up effect, of an event that stays.
    const kept = { ...e, event_id: '0190aaaa-0000-7000-8000-000000000002', seq: 2 }
    store.events.insert(kept as never, 'bafy2', 9000)
    store.db.run("UPDATE events SET state = 'done'")
    store.db.run('INSERT INTO plugin_effects (plugin, producer, event_id, next_at) VALUES (?, ?, ?, ?)', ['gated', producer, kept.event_id, 0])
    store.pluginState.effectGaveUp('gated', { producer, event_id: kept.event_id }, 1, 'the remote is down', 9500)
    // events-retention's housekeeping, past the first event's received_at only
    expect(store.events.deleteProcessedBefore(5000)).toBe(1)
    expect(store.pluginState.forgetEffectsOfGoneEvents()).toBe(1)
    const counted = store.pluginState.effectCounts().gaveUp
    const listed = store.pluginState.givenUpEffects().map((g) => g.event_id)
    expect({ counted, listed }).toEqual({ counted: 1, listed: [kept.event_id] })
  } finally {
    store.close()
  }
})
