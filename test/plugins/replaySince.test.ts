import { expect, test } from 'bun:test'
import { join } from 'node:path'
import { Store } from '../../src/store/store.ts'
import { cairn, tempDir } from '../helpers/process.ts'

// Review: the usage is (EVENT_ID [--producer] | --dead | --type TYPE [--since TIME]), but --since was taken
// with --dead and with EVENT_ID too. With --dead it was dropped without a word: `cairn replay --effects --dead
// --since 1h`, meant as "the effects given up in the last hour", ran again every effect ever given up (their
// side effects included). With EVENT_ID it made a given-up effect say "ran".
test('cairn replay refuses --since without --type instead of ignoring it', async () => {
  using tmp = tempDir()
  const dir = join(tmp.path, 'n')
  expect((await cairn(['init', '--data', dir, '--new-network'], { runtime: 'bun' })).code).toBe(0)
  const producer = '12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'
  const ids = ['0190aaaa-0000-7000-8000-000000000001', '0190aaaa-0000-7000-8000-000000000002']
  const store = await Store.open(join(dir, 'cairn.db'))
  try {
    store.db.run('INSERT OR IGNORE INTO plugin_cursors (plugin, cursor) VALUES (?, 0)', ['gated'])
    // one event received 30 days ago, one now; each with an effect given up
    for (const [i, receivedAt] of [Date.now() - 30 * 86_400_000, Date.now()].entries()) {
      const e = { event_id: ids[i], producer, seq: i + 1, type: 'test.gated', version: 1, hlc: `170000000000${i}-0000`, occurred_at: new Date(receivedAt).toISOString(), payload: {} }
      store.events.insert(e as never, 'bafy', receivedAt)
      store.db.run('INSERT INTO plugin_effects (plugin, producer, event_id, next_at) VALUES (?, ?, ?, ?)', ['gated', producer, e.event_id, 0])
      store.pluginState.effectGaveUp('gated', { producer, event_id: e.event_id }, 1, 'the remote is down', receivedAt)
    }
  } finally {
    store.close()
  }
  const dead = await cairn(['replay', '--data', dir, '--effects', '--dead', '--since', '1h'], { runtime: 'bun' })
  expect({ code: dead.code, stdout: dead.stdout, stderr: dead.stderr }).toEqual({
    code: 1,
    stdout: '',
    stderr: 'cairn replay: cairn replay --since goes with --type TYPE (see cairn replay --help)\n'
  })
  const one = await cairn(['replay', '--data', dir, '--effects', ids[0], '--since', '1h'], { runtime: 'bun' })
  expect({ code: one.code, stderr: one.stderr }).toEqual({ code: 1, stderr: 'cairn replay: cairn replay --since goes with --type TYPE (see cairn replay --help)\n' })
  // Nothing was made due: both effects are still given up.
  const after = await Store.open(join(dir, 'cairn.db'))
  try {
    expect(after.pluginState.effectCounts().gaveUp).toBe(2)
  } finally {
    after.close()
  }
}, 120_000)
