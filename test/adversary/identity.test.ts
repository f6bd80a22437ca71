import { describe, expect, test } from 'bun:test'
import { uuidv7 } from 'uuidv7'
import { cairn, invite, NodeProcess, tempDir, waitFor } from '../helpers/process.ts'
import { query } from '../helpers/db.ts'
import { inProcessNode, publishForgedTree } from '../helpers/forge.ts'
import { fileName } from '../../src/model/layout.ts'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { MIGRATIONS, migrate } from '../../src/store/migrations.ts'
import { Store } from '../../src/store/store.ts'

async function metric(node: NodeProcess, pattern: RegExp): Promise<number> {
  const m = pattern.exec(await (await fetch(`http://${node.http}/metrics`)).text())
  return m == null ? 0 : Number(m[1])
}

describe("a member cannot suppress another producer's event by taking its event_id", () => {
  test("X publishes Y's event_id first: Y's event still reaches every node and is applied, and Y's publish is answered with its own seq and cid", async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using y = await NodeProcess.init(tmp.path, 'y', { network: a })
    await using hostile = await NodeProcess.init(tmp.path, 'x', { network: a })
    await a.start()
    await y.start(['--bootstrap', a.addrs[0]])
    const x = await inProcessNode(hostile.dir, { bootstrap: [a.addrs[0]] })
    try {
      const me = x.peerId.toString()
      // The event_id Y is about to use (an outbox retrying a publish, a known id scheme, or one seen in flight).
      const stolen = uuidv7()
      const forged = {
        event_id: stolen,
        type: 'workspace.invited',
        version: 1,
        producer: me,
        seq: 1,
        hlc: `${Date.now()}-0000`,
        occurred_at: new Date().toISOString(),
        payload: (invite(1) as { payload: unknown }).payload
      }
      await publishForgedTree(x, 1, [{ name: fileName(1, stolen), content: forged }])
      for (const n of [a, y]) await waitFor(`X's event on ${n.peerId}`, () => query(n.dir, 'SELECT 1 FROM events WHERE producer = ? AND event_id = ?', [me, stolen]).length === 1, 30_000)
      // X's part is done: its event is first everywhere.
      await x.stop()

      // Y publishes its own event with that event_id: it is published, not answered with X's seq and cid.
      const own = await y.publish({ ...invite(2), event_id: stolen })
      expect(own.event_id).toBe(stolen)
      expect(own.seq).toBe(1)
      const xRow = query<{ cid: string }>(y.dir, 'SELECT cid FROM events WHERE producer = ? AND event_id = ?', [me, stolen])[0]
      expect(own.cid).not.toBe(xRow.cid)
      // Publishing it again is idempotent within Y: the same seq and cid.
      expect(await y.publish({ ...invite(2), event_id: stolen })).toEqual({ ...own, replayed: true })

      for (const n of [a, y]) {
        await waitFor(
          `Y's event applied on ${n.peerId}`,
          () => query(n.dir, "SELECT 1 FROM workspace_access WHERE producer = ? AND event_id = ? AND subject = 'user2@example.com'", [y.peerId, stolen]).length > 0,
          30_000
        )
        expect(query(n.dir, 'SELECT producer FROM events WHERE event_id = ? ORDER BY producer', [stolen]).map((r) => r.producer)).toEqual([me, y.peerId].sort())
      }
      // Both are applied by the built-in plugin, each once, under its own producer.
      expect(query(a.dir, 'SELECT producer, count(*) AS n FROM plugin_applied WHERE event_id = ? GROUP BY producer ORDER BY producer', [stolen])).toEqual(
        [me, y.peerId].sort().map((p) => ({ producer: p, n: 1 }))
      )
      // The collision is counted, on the node that saw X's first, in the metric and in status.
      expect(await metric(a, /^cairn_rejected_total\{reason="event_id_collision"\} (\d+)/m)).toBe(1)
      expect(JSON.parse((await cairn(['status', '--data', a.dir, '--json'])).stdout).event_id_collisions).toBe(1)
      // Y's event is in the stream too, named by its producer.
      const stream = await fetch(`http://${a.http}/v1/stream?types=workspace.invited`, { headers: { authorization: `Bearer ${a.token}` } })
      const reader = stream.body!.getReader()
      let text = ''
      while (!(text.includes(y.peerId) && text.includes(me))) text += new TextDecoder().decode((await reader.read()).value)
      await reader.cancel()
    } finally {
      await x.stop()
    }
  }, 120_000)
})

describe('migration 3 (events keyed by producer and event_id)', () => {
  test('a database of the previous schema migrates in place: every row, cursor and plugin record kept, no cursor handed out twice', async () => {
    const db = await openDatabase(':memory:')
    migrate(db, MIGRATIONS.slice(0, 2))
    const row = (id: string, producer: string, seq: number, state: string): void => {
      db.run(
        "INSERT INTO events (event_id, producer, seq, type, version, hlc, occurred_at, payload, cid, received_at, state) VALUES (?, ?, ?, 'workspace.invited', 1, '1-0000', 'now', '{}', 'bafy', 1, ?)",
        [id, producer, seq, state]
      )
    }
    row('e1', 'P', 1, 'done')
    row('e2', 'Q', 1, 'pending')
    row('e3', 'Q', 2, 'done')
    db.run("DELETE FROM events WHERE event_id = 'e3'")
    db.run("INSERT INTO plugin_cursors VALUES ('wa', 2)")
    db.run("INSERT INTO plugin_applied VALUES ('wa', 'e1', 10), ('wa', 'e3', 11)")
    db.run("INSERT INTO plugin_failures VALUES ('wa', 'e2', 2, 'boom', 99)")
    db.run("INSERT INTO dead_letters VALUES ('wa', 'e1', 5, 'old', 12)")
    db.run("INSERT INTO plugin_held VALUES ('wa', 'e2', 3, 13)")
    db.run("INSERT INTO plugin_replay VALUES ('wa', 'e1', 14)")
    db.run("INSERT INTO plugin_effects (plugin, event_id, attempts, next_at) VALUES ('wa', 'e1', 0, 15)")
    const before = db.all('SELECT * FROM events ORDER BY cursor')
    expect(migrate(db)).toBe(MIGRATIONS.length)
    const store = new Store(db)
    expect(db.all('SELECT * FROM events ORDER BY cursor')).toEqual(before)
    expect(db.all('SELECT plugin, producer, event_id, applied_at FROM plugin_applied ORDER BY event_id')).toEqual([
      { plugin: 'wa', producer: 'P', event_id: 'e1', applied_at: 10 },
      // its event is gone: kept, matching no producer's event (a later event with that id is not taken for it)
      { plugin: 'wa', producer: '', event_id: 'e3', applied_at: 11 }
    ])
    expect(store.pluginState.isApplied('wa', { producer: 'Z', event_id: 'e3' })).toBe(false)
    expect(store.pluginState.failure('wa', { producer: 'Q', event_id: 'e2' })).toEqual({ attempts: 2, next_at: 99 })
    expect(store.pluginState.deadLetters().map((d) => [d.producer, d.event_id, d.attempts])).toEqual([['P', 'e1', 5]])
    expect(store.pluginState.held().map((h) => [h.producer, h.event_id])).toEqual([['Q', 'e2']])
    expect(store.events.queuedForReplay('wa').map((r) => r.event_id)).toEqual(['e1'])
    expect(store.pluginState.dueEffects(100, ['wa']).map((e) => [e.producer, e.event_id])).toEqual([['P', 'e1']])
    // The next cursor is past the deleted row's: a stream client or plugin never sees a cursor twice.
    store.events.insert({ event_id: 'e1', type: 't', version: 1, producer: 'Q', seq: 5, hlc: '2-0000', occurred_at: 'now', payload: {} }, 'bafy', 2)
    expect(store.events.byId('e1', 'Q')?.cursor).toBe(4)
    expect(store.events.collisions()).toBe(1)
    store.close()
  })
})
