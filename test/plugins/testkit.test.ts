import { describe, expect, test } from 'bun:test'
import { testPlugin } from '../../src/plugins/testkit.ts'
import { ClockSkewError, CommitFailedError, NotStartedError, RemovedMemberError } from '../../src/errors.ts'
import type { PublishResult } from '../../src/model/publishRequest.ts'
import { definePlugin, PermanentError, upcaster, v, type PluginFactory } from '../../src/plugins/mod.ts'

/** A plugin whose effect publishes a receipt of each test.paid and catches a refusal of that publish, logging it; `runs` gets each run's id. */
function catchingPaid(runs: string[] = []) {
  return definePlugin({
    name: 'paid',
    handles: { 'test.paid': { version: 1, payload: v.object({ id: v.string() }) } },
    apply() {},
    async effect(event, ctx) {
      runs.push(event.payload.id)
      try {
        await ctx.publish({ event_id: `${event.event_id}:receipt`, type: 'test.receipt', payload: { id: event.payload.id } })
      } catch (err) {
        ctx.log.warn('receipt not published', { err: String(err) })
      }
    }
  })
}

// The function form, as a file without node_modules writes it: the SDK comes in as the argument.
const flaky: PluginFactory = ({ v, definePlugin, PermanentError }) => {
  let failuresLeft = 2
  return definePlugin({
    name: 'flaky',
    handles: {
      'test.item': {
        version: 2,
        payload: v.object({ id: v.string() }),
        apply(event, { db, log }) {
          if (event.payload.id === 'never') throw new PermanentError('never applies')
          if (event.payload.id === 'flaky' && failuresLeft-- > 0) throw new Error('not yet')
          log.info('applied', { id: event.payload.id })
          db.run('INSERT INTO items (producer, event_id, id) VALUES (?, ?, ?)', [event.producer, event.event_id, event.payload.id])
        }
      }
    },
    migrations: ['CREATE TABLE items (producer TEXT, event_id TEXT, id TEXT, PRIMARY KEY (producer, event_id))']
  })
}

describe('testPlugin', () => {
  test('retries wait on the kit clock, a permanent error is dead-lettered at once, and logs are kept', async () => {
    await using t = await testPlugin(flaky, { backoffMs: 1000 })
    await t.apply([
      { type: 'test.item', payload: { id: 'a' } },
      { type: 'test.item', payload: { id: 'flaky' } },
      { type: 'test.item', payload: { id: 'never' } }
    ])
    expect({ items: t.all('SELECT id FROM items ORDER BY id'), retrying: t.retrying(), dead: t.deadLetters().map((d) => [d.error, d.attempts]) }).toEqual({
      items: [{ id: 'a' }],
      retrying: 1,
      dead: [['never applies', 1]]
    })
    await t.clock.advance(999)
    expect(t.retrying()).toBe(1)
    await t.clock.advance(1)
    expect(t.retrying()).toBe(1)
    await t.clock.advance(2000)
    expect({ items: t.all('SELECT id FROM items ORDER BY id'), retrying: t.retrying(), applied: t.appliedCount() }).toEqual({ items: [{ id: 'a' }, { id: 'flaky' }], retrying: 0, applied: 2 })
    expect(t.logs.filter((l) => l.msg === 'applied').map((l) => [l.fields.plugin, l.fields.id])).toEqual([
      ['flaky', 'a'],
      ['flaky', 'flaky']
    ])
  })

  test('an event of a newer version is held; redelivery and replay never apply one twice', async () => {
    await using t = await testPlugin(flaky)
    const [held] = await t.apply([
      { type: 'test.item', version: 3, payload: { id: 'v3' } },
      { type: 'test.item', payload: { id: 'b' }, producer: 'bob' }
    ])
    expect(t.held()).toEqual([{ plugin: 'flaky', event_id: held.event_id, producer: held.producer, type: 'test.item', version: 3 }])
    expect(await t.redeliver()).toBe(0)
    expect(await t.replay({ type: 'test.item' })).toBe(1)
    expect(t.all('SELECT count(*) AS n FROM items')).toEqual([{ n: 1 }])
  })

  test('upgrade applies held events through the new release, and rebuild backfills a new column', async () => {
    const v1 = definePlugin({
      name: 'notes',
      handles: { 'test.note': { version: 1, payload: v.strictObject({ id: v.string() }), apply: (e, { db }) => void db.run('INSERT INTO notes (id) VALUES (?)', [e.payload.id]) } },
      migrations: ['CREATE TABLE notes (id TEXT PRIMARY KEY)']
    })
    await using t = await testPlugin(v1)
    await t.apply([
      { type: 'test.note', payload: { id: 'a', text: 'from a newer node' } },
      { type: 'test.note', version: 2, payload: { id: 'b', text: 'v2' } }
    ])
    expect({ rows: t.all('SELECT id FROM notes'), held: t.held().length, dead: t.deadLetters() }).toEqual({ rows: [{ id: 'a' }], held: 1, dead: [] })
    const Text = v.strictObject({ id: v.string(), text: v.optional(v.string()) })
    await t.upgrade(
      definePlugin({
        name: 'notes',
        handles: {
          'test.note': {
            version: 2,
            payload: Text,
            upcast: { 1: upcaster(Text, (old) => old) },
            apply: (e, { db }) => void db.run('INSERT INTO notes (id, text) VALUES (?, ?)', [e.payload.id, e.payload.text ?? null])
          }
        },
        migrations: [...(v1.migrations ?? []), 'ALTER TABLE notes ADD COLUMN text TEXT']
      })
    )
    expect({ rows: t.all('SELECT id, text FROM notes ORDER BY id'), held: t.held() }).toEqual({
      rows: [
        { id: 'a', text: null },
        { id: 'b', text: 'v2' }
      ],
      held: []
    })
    expect(await t.rebuild()).toBe(2)
    expect(t.all('SELECT id, text FROM notes ORDER BY id')).toEqual([
      { id: 'a', text: 'from a newer node' },
      { id: 'b', text: 'v2' }
    ])
  })

  test("a type's own effect runs after apply, with the payload typed, and publishes through ctx.publish", async () => {
    const relay = definePlugin({
      name: 'relay',
      handles: {
        'test.ping': {
          version: 1,
          payload: v.strictObject({ n: v.number() }),
          apply() {},
          async effect(event, { publish }) {
            await publish({ type: 'test.pong', payload: { n: event.payload.n + 1 }, causation_id: event.event_id })
          }
        }
      }
    })
    await using t = await testPlugin(relay)
    const [ping] = await t.apply({ type: 'test.ping', payload: { n: 1 } })
    expect(t.published).toEqual([{ type: 'test.pong', payload: { n: 2 }, causation_id: ping.event_id }])
    expect(await t.rebuild()).toBe(1)
    expect(t.published).toHaveLength(1)
  })

  test('an apply or effect that throws something other than an Error is retried and dead-lettered like any failure, its value in the message; later events go on', async () => {
    const thrown: Record<string, unknown> = { str: 'no stock', undef: undefined, obj: Object.create(null) }
    let effectThrows = true
    const odd = definePlugin({
      name: 'odd',
      handles: { 'test.item': { version: 1, payload: v.object({ id: v.string() }) } },
      migrations: ['CREATE TABLE items (id TEXT PRIMARY KEY)'],
      apply(event, { db }) {
        if (event.payload.id in thrown) throw thrown[event.payload.id]
        db.run('INSERT INTO items (id) VALUES (?)', [event.payload.id])
      },
      async effect() {
        if (effectThrows) throw undefined
      }
    })
    await using t = await testPlugin(odd, { backoffMs: 1000 })
    await t.apply([
      { type: 'test.item', payload: { id: 'str' } },
      { type: 'test.item', payload: { id: 'undef' } },
      { type: 'test.item', payload: { id: 'obj' } },
      { type: 'test.item', payload: { id: 'ok' } }
    ])
    expect({ items: t.all('SELECT id FROM items'), retrying: t.retrying() }).toEqual({ items: [{ id: 'ok' }], retrying: 3 })
    expect(t.get("SELECT attempts, last_error FROM plugin_effects WHERE plugin = 'odd'")).toEqual({ attempts: 1, last_error: 'threw undefined, which is not an Error' })
    for (let i = 0; i < 5; i++) await t.clock.advance(60_000)
    expect(
      t
        .deadLetters()
        .map((d) => d.error)
        .toSorted()
    ).toEqual(['threw "no stock", which is not an Error', 'threw a value, which is not an Error', 'threw undefined, which is not an Error'])
    effectThrows = false
    await t.clock.advance(60_000)
    expect(t.get("SELECT done_at IS NOT NULL AS done FROM plugin_effects WHERE plugin = 'odd'")).toEqual({ done: 1 })
  })

  test('an effect reads but cannot write ctx.db, knows its node as ctx.self, gives up on PermanentError, and waits without an attempt while the node starts', async () => {
    const seen: Array<{ id: string; own: boolean; rows: number }> = []
    let starting = true
    const notes = definePlugin({
      name: 'notes',
      handles: { 'test.note': { version: 1, payload: v.object({ id: v.string() }) } },
      migrations: ['CREATE TABLE notes (id TEXT PRIMARY KEY)'],
      apply(event, { db }) {
        db.run('INSERT INTO notes (id) VALUES (?)', [event.payload.id])
      },
      async effect(event, ctx) {
        if (event.payload.id === 'never') throw new PermanentError('the mailbox does not exist')
        const rows = ctx.db.get<{ n: number }>('SELECT count(*) AS n FROM notes')?.n ?? 0
        expect(() => ctx.db.get("INSERT INTO notes (id) VALUES ('x') RETURNING id")).toThrow('ctx.db in an effect only reads')
        expect(() => (ctx.db as unknown as { run: (sql: string) => void }).run("INSERT INTO notes (id) VALUES ('y')")).toThrow('ctx.db in an effect only reads')
        if (event.payload.id === 'late') await ctx.publish({ type: 'test.note', payload: { id: 'follow-up' } })
        seen.push({ id: event.payload.id, own: event.producer === ctx.self, rows })
      }
    })
    const publish = async (): Promise<PublishResult> => {
      if (starting) throw new NotStartedError('The node is starting')
      return { event_id: 'e', seq: 1, cid: 'c', replayed: false }
    }
    await using t = await testPlugin(notes, { backoffMs: 1000, publish })
    await t.apply([
      { type: 'test.note', payload: { id: 'mine' } },
      { type: 'test.note', payload: { id: 'theirs' }, producer: 'bob' },
      { type: 'test.note', payload: { id: 'never' } },
      { type: 'test.note', payload: { id: 'late' } }
    ])
    expect(seen).toEqual([
      { id: 'mine', own: true, rows: 4 },
      { id: 'theirs', own: false, rows: 4 }
    ])
    expect(t.all('SELECT id FROM notes ORDER BY id')).toEqual([{ id: 'late' }, { id: 'mine' }, { id: 'never' }, { id: 'theirs' }])
    // The PermanentError gave up at once; the publish before the node started counted no attempt and warned nothing.
    const effect = (id: string) =>
      t.get(
        "SELECT e.attempts, e.done_at IS NOT NULL AS done, e.gave_up_at IS NOT NULL AS gave_up, e.last_error FROM plugin_effects e JOIN events v ON v.producer = e.producer AND v.event_id = e.event_id WHERE json_extract(v.payload, '$.id') = ?",
        [id]
      )
    expect({ never: effect('never'), late: effect('late') }).toEqual({
      never: { attempts: 1, done: 1, gave_up: 1, last_error: 'the mailbox does not exist' },
      late: { attempts: 0, done: 0, gave_up: 0, last_error: 'The node is starting' }
    })
    expect(t.logs.filter((l) => l.level === 'warn')).toEqual([])
    expect(t.logs.filter((l) => l.level === 'error').map((l) => l.fields.reason)).toEqual(['effect_given_up'])
    starting = false
    await t.clock.advance(1000)
    expect({ late: effect('late'), seen: seen.map((s) => s.id) }).toEqual({ late: { attempts: 1, done: 1, gave_up: 0, last_error: 'The node is starting' }, seen: ['mine', 'theirs', 'late'] })
    await t.clock.advance(600_000)
    expect(effect('never')).toEqual({ attempts: 1, done: 1, gave_up: 1, last_error: 'the mailbox does not exist' })
  })

  test('an effect that catches the refusal of its publish while the node starts is not done: it runs again once the node publishes, and its follow-up is published', async () => {
    let starting = true
    const runs: string[] = []
    const published: string[] = []
    const paid = catchingPaid(runs)
    const publish = async (r: { event_id?: string }): Promise<PublishResult> => {
      if (starting) throw new NotStartedError('The node is starting')
      published.push(r.event_id ?? '')
      return { event_id: r.event_id ?? 'e', seq: published.length, cid: 'c', replayed: false }
    }
    await using t = await testPlugin(paid, { backoffMs: 1000, publish })
    await t.apply({ type: 'test.paid', payload: { id: 'x1' } })
    const effect = () => t.get('SELECT attempts, done_at IS NOT NULL AS done, last_error FROM plugin_effects')
    expect({ effect: effect(), runs, published }).toEqual({ effect: { attempts: 0, done: 0, last_error: 'The node is starting' }, runs: ['x1'], published: [] })
    await t.clock.advance(1000)
    expect({ effect: effect(), runs }).toEqual({ effect: { attempts: 0, done: 0, last_error: 'The node is starting' }, runs: ['x1', 'x1'] })
    starting = false
    await t.clock.advance(1000)
    expect({ effect: effect(), runs, published: published.map((id) => id.split(':')[1]) }).toEqual({
      effect: { attempts: 1, done: 1, last_error: 'The node is starting' },
      runs: ['x1', 'x1', 'x1'],
      published: ['receipt']
    })
  })

  test('an effect whose publish the node refuses as a removed member is not done, though it catches the refusal: it fails at error level, is retried, and publishes once the node is added again', async () => {
    let removed = true
    const runs: string[] = []
    const published: string[] = []
    const paid = catchingPaid(runs)
    const publish = async (r: { event_id?: string }): Promise<PublishResult> => {
      if (removed) throw new RemovedMemberError('Cannot publish: this node was removed by o1')
      published.push(r.event_id ?? '')
      return { event_id: r.event_id ?? 'e', seq: published.length, cid: 'c', replayed: false }
    }
    await using t = await testPlugin(paid, { backoffMs: 1000, publish })
    await t.apply({ type: 'test.paid', payload: { id: 'x1' } })
    const effect = () => t.get('SELECT attempts, done_at IS NOT NULL AS done, last_error FROM plugin_effects')
    expect({ effect: effect(), runs, published }).toEqual({ effect: { attempts: 1, done: 0, last_error: 'Cannot publish: this node was removed by o1' }, runs: ['x1'], published: [] })
    expect(t.logs.filter((l) => l.level === 'error').map((l) => [l.fields.reason, l.fields.refusal])).toEqual([['effect_publish_refused', 'removed_member']])
    removed = false
    await t.clock.advance(60_000)
    expect({ done: effect()?.done, runs, published: published.map((id) => id.split(':')[1]) }).toEqual({ done: 1, runs: ['x1', 'x1'], published: ['receipt'] })
  })

  test("effects refused until an operator acts are logged at error level once per plugin every 10 minutes, each effect's other failures at debug level", async () => {
    const runs: string[] = []
    const publish = async (): Promise<PublishResult> => {
      throw new RemovedMemberError('Cannot publish: this node was removed by o1')
    }
    await using t = await testPlugin(catchingPaid(runs), { backoffMs: 1000, publish })
    for (const id of ['x1', 'x2', 'x3']) await t.apply({ type: 'test.paid', payload: { id } })
    const refused = (level: string) => t.logs.filter((l) => l.level === level && l.fields.reason === 'effect_publish_refused').map((l) => l.fields.event_id)
    expect({ runs, error: refused('error').length, debug: refused('debug').length }).toEqual({ runs: ['x1', 'x2', 'x3'], error: 1, debug: 2 })
    expect(t.logs.find((l) => l.level === 'error')?.msg).toContain('(the other effects of paid refused so are logged at debug level for 10 minutes)')
    // Each effect retries at most a minute apart: nine minutes later, none has been logged at error level again.
    for (let i = 0; i < 9; i++) await t.clock.advance(60_000)
    expect(refused('error').length).toBe(1)
    expect(runs.length).toBeGreaterThan(3 * 5)
    await t.clock.advance(60_000)
    expect(refused('error').length).toBe(2)
  })

  test('a dead letter replayed that fails again is retrying, no longer dead', async () => {
    let fixed = false
    const flaky = definePlugin({
      name: 'flaky',
      handles: { 'test.item': { version: 1, payload: v.object({ id: v.string() }) } },
      apply() {
        if (!fixed) throw new Error('not yet')
      }
    })
    await using t = await testPlugin(flaky, { backoffMs: 1000, maxAttempts: 2 })
    await t.apply({ type: 'test.item', payload: { id: 'a' } })
    const counts = () => ({ dead: t.deadLetters().length, retrying: t.retrying(), applied: t.appliedCount() })
    expect(counts()).toEqual({ dead: 0, retrying: 1, applied: 0 })
    await t.clock.advance(1000)
    expect(counts()).toEqual({ dead: 1, retrying: 0, applied: 0 })
    // Replayed before its cause is fixed: it fails again and is retrying, not also dead.
    expect(await t.replay()).toBe(1)
    expect(counts()).toEqual({ dead: 0, retrying: 1, applied: 0 })
    await t.clock.advance(1000)
    expect(counts()).toEqual({ dead: 1, retrying: 0, applied: 0 })
    fixed = true
    expect(await t.replay()).toBe(1)
    expect(counts()).toEqual({ dead: 0, retrying: 0, applied: 1 })
  })

  test('a rebuild that applies the events the plugin was retrying or had dead-lettered runs their effects, once; the others’ not again', async () => {
    const refused = new Set(['dead', 'retried'])
    const ran: string[] = []
    const items = definePlugin({
      name: 'items',
      handles: { 'test.item': { version: 1, payload: v.object({ id: v.string() }) } },
      migrations: ['CREATE TABLE items (id TEXT PRIMARY KEY)'],
      apply(event, { db }) {
        if (event.payload.id === 'dead' && refused.has('dead')) throw new PermanentError('refused for good')
        if (refused.has(event.payload.id)) throw new Error('not yet')
        db.run('INSERT INTO items (id) VALUES (?)', [event.payload.id])
      },
      async effect(event) {
        ran.push(event.payload.id)
      }
    })
    await using t = await testPlugin(items, { backoffMs: 60_000 })
    await t.apply([
      { type: 'test.item', payload: { id: 'a' } },
      { type: 'test.item', payload: { id: 'dead' } },
      { type: 'test.item', payload: { id: 'retried' } }
    ])
    expect({ ran, dead: t.deadLetters().length, retrying: t.retrying() }).toEqual({ ran: ['a'], dead: 1, retrying: 1 })
    // The cause is fixed and the plugin rebuilt instead of replayed.
    refused.clear()
    expect(await t.rebuild()).toBe(3)
    expect({ ran: ran.toSorted(), items: t.all('SELECT id FROM items ORDER BY id'), dead: t.deadLetters().length, retrying: t.retrying() }).toEqual({
      ran: ['a', 'dead', 'retried'],
      items: [{ id: 'a' }, { id: 'dead' }, { id: 'retried' }],
      dead: 0,
      retrying: 0
    })
    // A second rebuild runs none again.
    expect(await t.rebuild()).toBe(3)
    await t.clock.advance(120_000)
    expect(ran.toSorted()).toEqual(['a', 'dead', 'retried'])
  })

  test('a plugin with a full-text (FTS5) table is rebuilt and listed with it: its migrations name it with CREATE VIRTUAL TABLE', async () => {
    const docs = definePlugin({
      name: 'docs',
      handles: { 'test.doc': { version: 1, payload: v.object({ body: v.string() }) } },
      migrations: ['CREATE VIRTUAL TABLE docs USING fts5(body)'],
      apply: (event, { db }) => void db.run('INSERT INTO docs (body) VALUES (?)', [event.payload.body])
    })
    await using t = await testPlugin(docs)
    await t.apply([
      { type: 'test.doc', payload: { body: 'red fox' } },
      { type: 'test.doc', payload: { body: 'blue whale' } }
    ])
    expect(await t.rebuild()).toBe(2)
    expect(t.all("SELECT body FROM docs WHERE docs MATCH 'fox'")).toEqual([{ body: 'red fox' }])
    expect(t.get<{ n: number }>('SELECT count(*) AS n FROM docs')?.n).toBe(2)
  })

  test('a plugin with an unknown key is refused as a node would refuse it', async () => {
    await expect(
      testPlugin(({ v, definePlugin }) => definePlugin({ name: 'typo', handles: { 'a.b': { version: 1, payload: v.unknown(), apply() {} } }, migrations: [], apply() {} }))
    ).resolves.toBeDefined()
    const typo = { name: 'typo', handles: { 'a.b': { verison: 1, payload: {}, apply() {} } } }
    await expect(testPlugin(typo as never)).rejects.toThrow('handles.a.b.verison: Unknown handler key "verison"')
  })
})

// A publish the node refuses for now (its clock off from the network's: 503 clock_skew; a commit that failed, such as
// on a full disk: 503 commit_failed) fails the effect's run however the effect ends: one that caught the refusal and
// returned did not publish its follow-up, and marking it done would lose that for good.
for (const refusal of [() => new ClockSkewError('Cannot publish: this clock is off'), () => new CommitFailedError('Cannot publish: the commit failed: database or disk is full')]) {
  test(`an effect that catches a ${refusal().name} from ctx.publish is not done: it is retried`, async () => {
    const paid = catchingPaid()
    const publish = async (): Promise<PublishResult> => {
      throw refusal()
    }
    await using t = await testPlugin(paid, { backoffMs: 1000, publish })
    await t.apply({ type: 'test.paid', payload: { id: 'x1' } })
    expect(t.get('SELECT done_at IS NOT NULL AS done, attempts FROM plugin_effects')).toEqual({ done: 0, attempts: 1 })
  })
}
