import { describe, expect, test } from 'bun:test'
import { existsSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { uuidv7 } from 'uuidv7'
import { initDataDir } from '../../src/datadir/init.ts'
import { CairnNode } from '../../src/node/node.ts'
import { RUN_SETTINGS, toNodeConfig } from '../../src/config/catalog.ts'
import { resolveSettings } from '../../src/config/resolve.ts'
import { Store } from '../../src/store/store.ts'
import type { Log } from '../../src/log/logger.ts'
import { definePlugin, PermanentError, v } from '../../src/plugins/mod.ts'
import type { Plugin } from '../../src/plugins/types.ts'
import { requestReplay } from '../../src/plugins/replay.ts'
import { rebuildRequested, requestRebuild } from '../../src/plugins/rebuild.ts'
import { tempDir, waitFor } from '../helpers/process.ts'
import { Database } from 'bun:sqlite'

/** Events of the rebuilt plugin's type in the history: enough that its rebuild takes a good part of a second or more. */
const HISTORY = 20_000
const PRODUCER = '12D3KooWA1111111111111111111111111111111111111111111'

/** @returns the rows of a read-only query of the SQLite file at `path` (a rebuild's shadow, beside the node's own connection) */
function query(path: string, sql: string): unknown[] {
  const db = new Database(path, { readonly: true })
  try {
    return db.query(sql).all()
  } finally {
    db.close()
  }
}

/** What the plugins under test record outside their tables: the generation their apply writes, and each effect run. */
class World {
  gen = 1
  /** the `i` of the items apply refuses for good (PermanentError: dead-lettered) */
  readonly refused = new Set<number>()
  readonly effects = new Map<string, number>()
  readonly logs: Array<{ level: string; msg: string; fields: Record<string, unknown> }> = []

  log(fields: Record<string, unknown> = {}): Log {
    const line =
      (level: string) =>
      (msg: string, more: Record<string, unknown> = {}): void => {
        this.logs.push({ level, msg, fields: { ...fields, ...more } })
      }
    return { debug: () => {}, info: line('info'), warn: line('warn'), error: line('error'), child: (more) => this.log({ ...fields, ...more }) }
  }

  plugins(): Plugin[] {
    const items = definePlugin({
      name: 'items',
      handles: { 'test.item': { version: 1, payload: v.object({ i: v.number() }) } },
      // A seed row and a trigger: the swap copies the rows and must neither keep the seed twice nor fire the trigger again.
      migrations: [
        `CREATE TABLE items (event_id TEXT PRIMARY KEY, i INTEGER NOT NULL, gen INTEGER NOT NULL);
         CREATE TABLE item_total (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
         INSERT INTO item_total (id, n) VALUES (1, 0);
         CREATE TRIGGER item_counted AFTER INSERT ON items BEGIN UPDATE item_total SET n = n + 1; END;
         CREATE VIEW item_gens AS SELECT gen, count(*) AS n FROM items GROUP BY gen`
      ],
      apply: (event, { db }) => {
        if (this.refused.has(event.payload.i)) throw new PermanentError(`item ${event.payload.i} is refused`)
        // A second apply of an event fails on the primary key: the test would see it retried or dead-lettered.
        db.run('INSERT INTO items (event_id, i, gen) VALUES (?, ?, ?)', [event.event_id, event.payload.i, this.gen])
      },
      effect: async (event) => {
        this.effects.set(event.event_id, (this.effects.get(event.event_id) ?? 0) + 1)
      }
    })
    const pings = definePlugin({
      name: 'pings',
      handles: { 'test.ping': { version: 1, payload: v.object({ n: v.number() }) } },
      migrations: ['CREATE TABLE pings (event_id TEXT PRIMARY KEY, n INTEGER NOT NULL)'],
      apply: (event, { db }) => void db.run('INSERT INTO pings (event_id, n) VALUES (?, ?)', [event.event_id, event.payload.n])
    })
    const notes = definePlugin({
      name: 'notes',
      handles: { 'test.note': { version: 1, payload: v.object({ body: v.string() }) } },
      // No INTEGER PRIMARY KEY: rows are known by their rowid, which a deleted row leaves a gap in.
      migrations: ['CREATE TABLE notes (body TEXT NOT NULL)'],
      apply: (event, { db }) => {
        const drop = /^drop:(.*)$/.exec(event.payload.body)
        if (drop != null) db.run('DELETE FROM notes WHERE body = ?', [drop[1]])
        else db.run('INSERT INTO notes (body) VALUES (?)', [event.payload.body])
      }
    })
    const docs = definePlugin({
      name: 'docs',
      handles: { 'test.doc': { version: 1, payload: v.object({ body: v.string() }) } },
      // A virtual table: FTS5 fills its own tables (docs_data, docs_idx, …), which nothing else may write.
      migrations: ['CREATE VIRTUAL TABLE docs USING fts5(body)'],
      apply: (event, { db }) => void db.run('INSERT INTO docs (body) VALUES (?)', [event.payload.body])
    })
    return [items, pings, notes, docs]
  }

  node(dir: string): CairnNode {
    const config = toNodeConfig(resolveSettings(RUN_SETTINGS, { data: dir, listen: ['/ip4/127.0.0.1/tcp/0'], http: '127.0.0.1:0', 'announce-interval': '1h', 'allow-unknown-types': true }, {}, {}))
    return new CairnNode(config, { log: this.log(), plugins: this.plugins() })
  }
}

/** A data directory whose events table holds HISTORY `test.item` events of another producer. */
async function history(parent: string): Promise<string> {
  const dir = join(parent, 'n')
  await initDataDir(dir, { newNetwork: true })
  const store = await Store.open(join(dir, 'cairn.db'))
  try {
    store.transaction(() => {
      for (let i = 1; i <= HISTORY; i++) {
        store.events.insert(
          { event_id: uuidv7(), type: 'test.item', version: 1, producer: PRODUCER, seq: i, hlc: `${1_800_000_000_000 + i}-0000`, occurred_at: new Date().toISOString(), payload: { i } },
          'bafyitem',
          Date.now()
        )
      }
    })
  } finally {
    store.close()
  }
  return dir
}

const gens = (store: Store): Array<{ gen: number; n: number }> => store.db.all('SELECT gen, n FROM item_gens ORDER BY gen')
const once = (store: Store): { n: number; once: number } | undefined => store.db.get("SELECT count(*) AS n, count(DISTINCT event_id) AS once FROM plugin_applied WHERE plugin = 'items'")

/**
 * Expects the item `id`, once a dead letter, in the rebuilt tables and no dead letter left, every one of the
 * HISTORY items applied once, and then `id`'s effect run once and no effect twice.
 */
async function expectOnceWithEffect(node: CairnNode, world: World, id: string, what: string): Promise<void> {
  expect({
    item: node.store.db.get('SELECT gen FROM items WHERE event_id = ?', [id]),
    dead: node.store.db.get("SELECT count(*) AS n FROM dead_letters WHERE plugin = 'items'"),
    applied: once(node.store)
  }).toEqual({ item: { gen: 2 }, dead: { n: 0 }, applied: { n: HISTORY, once: HISTORY } })
  await waitFor(`${what}’s effect`, () => world.effects.get(id) === 1)
  expect({ size: world.effects.size, most: Math.max(...world.effects.values()) }).toEqual({ size: HISTORY, most: 1 })
}

/** Resolves with the event's detail the first time the node dispatches it for plugin `items`. */
function next(node: CairnNode, type: 'plugin:rebuilding' | 'plugin:rebuilt', plugin = 'items'): { promise: Promise<void>; fired: () => boolean } {
  let fired = false
  const promise = new Promise<void>((resolve) => {
    const listener = (e: Event): void => {
      if ((e as CustomEvent<{ plugin: string }>).detail.plugin !== plugin) return
      fired = true
      node.events.removeEventListener(type, listener)
      resolve()
    }
    node.events.addEventListener(type, listener)
  })
  return { promise, fired: () => fired }
}

/** @returns a started node (its plugins may still be applying) over a data directory of HISTORY items of another producer */
async function historyNode(parent: string, setup?: (world: World) => void): Promise<{ dir: string; world: World; node: CairnNode }> {
  const dir = await history(parent)
  const world = new World()
  setup?.(world)
  const node = world.node(dir)
  await node.start()
  return { dir, world, node }
}

/** @returns a started node of `world`'s plugins over a new, empty data directory */
async function freshNode<W extends World>(parent: string, world: W = new World() as W): Promise<{ world: W; node: CairnNode }> {
  const dir = join(parent, 'n')
  await initDataDir(dir, { newNetwork: true })
  const node = world.node(dir)
  await node.start()
  return { world, node }
}

/**
 * Asks for the items plugin's rebuild on a running node (listed as asked until a round takes it) and waits until
 * it has begun beside the node, not yet swapped.
 *
 * @returns the rebuild's end
 */
async function beginRebuild(node: CairnNode): Promise<{ promise: Promise<void>; fired: () => boolean }> {
  const started = next(node, 'plugin:rebuilding')
  const rebuilt = next(node, 'plugin:rebuilt')
  requestRebuild(node.store, 'items')
  expect(node.plugins.listPlugins().find((p) => p.name === 'items')?.rebuild).toBe('asked')
  node.plugins.changedElsewhere()
  await Promise.race([started.promise, rebuilt.promise])
  expect(rebuilt.fired()).toBe(false)
  return rebuilt
}

describe('a rebuild beside the running node', () => {
  test('the node publishes and applies other plugins while it runs; readers see the old tables whole until the swap; every event lands once, effects once', async () => {
    using tmp = tempDir()
    const { dir, world, node } = await historyNode(tmp.path)
    try {
      await node.plugins.drain()
      expect(gens(node.store)).toEqual([{ gen: 1, n: HISTORY }])
      await waitFor('the effects of the history', () => world.effects.size === HISTORY, 60_000)

      world.gen = 2
      const rebuilt = await beginRebuild(node)
      // the shadow holds a copy of the plugin's rows: like every file of the data directory, it is 0600
      expect(statSync(join(dir, 'rebuild-items.db')).mode & 0o777).toBe(0o600)

      // what cairn plugins and cairn status show meanwhile
      expect(node.plugins.listPlugins().map((p) => [p.name, p.rebuild])).toEqual([
        ['items', 'running'],
        ['pings', undefined],
        ['notes', undefined],
        ['docs', undefined]
      ])
      // (a) a publish is answered, and applied by another plugin, while the rebuild runs
      const ping = await node.publish({ type: 'test.ping', payload: { n: 1 } })
      const item = await node.publish({ type: 'test.item', payload: { i: HISTORY + 1 } })
      await waitFor('the ping applied by pings', () => node.store.db.get('SELECT 1 AS x FROM pings WHERE event_id = ?', [ping.event_id]) != null)
      await waitFor('the new item applied to the old tables', () => node.store.db.get('SELECT 1 AS x FROM items WHERE event_id = ?', [item.event_id]) != null)
      // (b) the plugin's tables are the old ones, whole, with the live event applied to them
      const during = { rebuilt: rebuilt.fired(), gens: gens(node.store), total: node.store.db.get('SELECT n FROM item_total') }
      expect(during).toEqual({
        rebuilt: false,
        gens: [
          { gen: 1, n: HISTORY },
          { gen: 2, n: 1 }
        ],
        total: { n: HISTORY + 1 }
      })
      await waitFor('the live item’s effect', () => world.effects.get(item.event_id) === 1)

      await rebuilt.promise
      await node.plugins.drain()
      expect(rebuildRequested(node.store, 'items')).toBe(false)
      expect(node.plugins.listPlugins().find((p) => p.name === 'items')?.rebuild).toBeUndefined()
      expect(existsSync(join(dir, 'rebuild-items.db'))).toBe(false)
      expect(gens(node.store)).toEqual([{ gen: 2, n: HISTORY + 1 }])
      // the seed row once, counted by the trigger once per event
      expect(node.store.db.all('SELECT id, n FROM item_total')).toEqual([{ id: 1, n: HISTORY + 1 }])
      expect(once(node.store)).toEqual({ n: HISTORY + 1, once: HISTORY + 1 })
      expect(node.store.db.get("SELECT (SELECT count(*) FROM plugin_failures WHERE plugin = 'items') + (SELECT count(*) FROM dead_letters WHERE plugin = 'items') AS n")).toEqual({ n: 0 })
      // events published after the swap are applied to the new tables, with their effect
      const after = await node.publish({ type: 'test.item', payload: { i: HISTORY + 2 } })
      await waitFor('the item after the rebuild’s effect', () => world.effects.get(after.event_id) === 1)
      expect(node.store.db.get('SELECT gen FROM items WHERE event_id = ?', [after.event_id])).toEqual({ gen: 2 })
      expect(once(node.store)).toEqual({ n: HISTORY + 2, once: HISTORY + 2 })
      // no effect ran again
      expect({ size: world.effects.size, most: Math.max(...world.effects.values()) }).toEqual({ size: HISTORY + 2, most: 1 })
      const done = world.logs.find((l) => l.fields.reason === 'plugin_rebuilt')
      expect(done?.fields).toMatchObject({ plugin: 'items', applied: HISTORY + 1, swap_ms: expect.any(Number) })
      expect(world.logs.some((l) => l.fields.reason === 'plugin_rebuild_started')).toBe(true)
    } finally {
      await node.stop()
    }
  }, 180_000)

  test('a stop half-way leaves the old tables, the request and no shadow; the next start (past a crash’s leftover shadow) completes it', async () => {
    using tmp = tempDir()
    const { dir, world, node: first } = await historyNode(tmp.path)
    try {
      await first.plugins.drain()
      world.gen = 2
      await beginRebuild(first)
    } finally {
      await first.stop()
    }
    const store = await Store.open(join(dir, 'cairn.db'))
    try {
      expect({
        request: rebuildRequested(store, 'items'),
        shadow: existsSync(join(dir, 'rebuild-items.db')),
        gens: gens(store),
        applied: once(store)
      }).toEqual({ request: true, shadow: false, gens: [{ gen: 1, n: HISTORY }], applied: { n: HISTORY, once: HISTORY } })
    } finally {
      store.close()
    }
    expect(world.logs.some((l) => l.fields.reason === 'plugin_rebuild_abandoned')).toBe(true)
    expect(world.logs.some((l) => l.fields.reason === 'plugin_rebuilt')).toBe(false)

    // A crash would have left a shadow behind: the start removes it and the rebuild runs from the start.
    writeFileSync(join(dir, 'rebuild-items.db'), 'left by a crash')
    world.gen = 3
    const second = world.node(dir)
    const rebuilt = next(second, 'plugin:rebuilt')
    await second.start()
    try {
      await rebuilt.promise
      await second.plugins.drain()
      expect({ request: rebuildRequested(second.store, 'items'), shadow: existsSync(join(dir, 'rebuild-items.db')), gens: gens(second.store), applied: once(second.store) }).toEqual({
        request: false,
        shadow: false,
        gens: [{ gen: 3, n: HISTORY }],
        applied: { n: HISTORY, once: HISTORY }
      })
      await waitFor('every effect of the history', () => world.effects.size === HISTORY, 60_000)
      expect(Math.max(...world.effects.values())).toBe(1)
    } finally {
      await second.stop()
    }
  }, 180_000)
  test('a replay asked while the rebuild runs is not undone by the swap: the event lands in the new tables, its effect once', async () => {
    using tmp = tempDir()
    const { dir, world, node } = await historyNode(tmp.path, (w) => w.refused.add(7))
    try {
      await node.plugins.drain()
      const dead = node.store.db.get<{ event_id: string }>("SELECT event_id FROM dead_letters WHERE plugin = 'items'")
      expect(dead).toBeDefined()
      const id = dead?.event_id ?? ''
      await waitFor('the effects of the history', () => world.effects.size === HISTORY - 1, 60_000)

      world.gen = 2
      const rebuilt = await beginRebuild(node)
      // The shadow's first slice (it runs on, in the same turn, before this test goes on) has refused item 7 again;
      // then the operator fixes the cause and replays it.
      expect(query(join(dir, 'rebuild-items.db'), "SELECT event_id FROM dead_letters WHERE plugin = 'items'")).toEqual([{ event_id: id }])
      world.refused.clear()
      expect(requestReplay(node.store, { dead: true })).toBe(1)
      node.plugins.changedElsewhere()
      await rebuilt.promise
      await node.plugins.drain()
      await expectOnceWithEffect(node, world, id, 'the replayed item')
    } finally {
      await node.stop()
    }
  }, 180_000)
  test('an event dead-lettered before the rebuild that the new tables apply (its cause fixed, no replay asked) has its effect run, once', async () => {
    using tmp = tempDir()
    const { world, node } = await historyNode(tmp.path, (w) => w.refused.add(7))
    try {
      await node.plugins.drain()
      const dead = node.store.db.get<{ event_id: string }>("SELECT event_id FROM dead_letters WHERE plugin = 'items'")
      const id = dead?.event_id ?? ''
      await waitFor('the effects of the history', () => world.effects.size === HISTORY - 1, 60_000)
      expect(world.effects.has(id)).toBe(false)

      world.gen = 2
      world.refused.clear()
      const rebuilt = await beginRebuild(node)
      await rebuilt.promise
      await node.plugins.drain()
      await expectOnceWithEffect(node, world, id, 'the dead-lettered item')
    } finally {
      await node.stop()
    }
  }, 180_000)
  test('an event the old tables fail on while the rebuild runs (the reason for it: they lack what the plugin now writes) is applied by the new tables with its effect, once', async () => {
    using tmp = tempDir()
    const { world, node } = await historyNode(tmp.path)
    try {
      await node.plugins.drain()
      await waitFor('the effects of the history', () => world.effects.size === HISTORY, 60_000)

      world.gen = 2
      const rebuilt = await beginRebuild(node)
      // The old tables refuse what the plugin writes now; the shadow's tables take it.
      node.store.db.exec("CREATE TRIGGER main.old_items_refuse BEFORE INSERT ON items BEGIN SELECT RAISE(ABORT, 'the old tables lack a column'); END")
      const item = await node.publish({ type: 'test.item', payload: { i: HISTORY + 1 } })
      await waitFor('the old tables’ walk failed on the new item', () => node.store.db.get("SELECT 1 AS x FROM plugin_failures WHERE plugin = 'items' AND event_id = ?", [item.event_id]) != null)
      expect(rebuilt.fired()).toBe(false)
      await rebuilt.promise
      await node.plugins.drain()
      expect({
        item: node.store.db.get('SELECT gen FROM items WHERE event_id = ?', [item.event_id]),
        effect: node.store.db.get("SELECT count(*) AS n FROM plugin_effects WHERE plugin = 'items' AND event_id = ?", [item.event_id]),
        applied: once(node.store)
      }).toEqual({ item: { gen: 2 }, effect: { n: 1 }, applied: { n: HISTORY + 1, once: HISTORY + 1 } })
      await waitFor('the new item’s effect', () => world.effects.get(item.event_id) === 1)
      expect({ size: world.effects.size, most: Math.max(...world.effects.values()) }).toEqual({ size: HISTORY + 1, most: 1 })
    } finally {
      await node.stop()
    }
  }, 180_000)
  test('rows keep their rowids through the swap (a table without an INTEGER PRIMARY KEY, with a row deleted)', async () => {
    using tmp = tempDir()
    const { world, node } = await freshNode(tmp.path)
    try {
      for (const body of ['a', 'b', 'c', 'drop:b']) await node.publish({ type: 'test.note', payload: { body } })
      await node.plugins.drain()
      const notes = (): unknown[] => node.store.db.all('SELECT rowid AS id, body FROM notes ORDER BY rowid')
      expect(notes()).toEqual([
        { id: 1, body: 'a' },
        { id: 3, body: 'c' }
      ])
      const rebuilt = next(node, 'plugin:rebuilt', 'notes')
      requestRebuild(node.store, 'notes')
      node.plugins.changedElsewhere()
      await rebuilt.promise
      await node.plugins.drain()
      expect(world.logs.find((l) => l.fields.reason === 'plugin_rebuilt')?.fields).toMatchObject({ plugin: 'notes', applied: 4 })
      expect(notes()).toEqual([
        { id: 1, body: 'a' },
        { id: 3, body: 'c' }
      ])
    } finally {
      await node.stop()
    }
  }, 60_000)
  test('a plugin with a full-text (FTS5) table is rebuilt: the swap copies it through the virtual table, whose own tables follow', async () => {
    using tmp = tempDir()
    const { world, node } = await freshNode(tmp.path)
    try {
      for (const body of ['red fox', 'blue whale', 'red panda']) await node.publish({ type: 'test.doc', payload: { body } })
      await node.plugins.drain()
      const red = (): unknown[] => node.store.db.all("SELECT rowid AS id, body FROM docs WHERE docs MATCH 'red' ORDER BY rowid")
      const before = red()
      expect(before).toHaveLength(2)
      const rebuilt = next(node, 'plugin:rebuilt', 'docs')
      requestRebuild(node.store, 'docs')
      node.plugins.changedElsewhere()
      await waitFor('the rebuild to end', () => world.logs.some((l) => l.fields.plugin === 'docs' && (l.fields.reason === 'plugin_rebuilt' || l.fields.reason === 'plugin_rebuild_failed')))
      expect(world.logs.filter((l) => l.fields.reason === 'plugin_rebuild_failed').map((l) => l.msg)).toEqual([])
      await rebuilt.promise
      await node.plugins.drain()
      expect(red()).toEqual(before)
      // FTS5's own check of its index against its content
      node.store.db.run("INSERT INTO docs (docs) VALUES ('integrity-check')")
    } finally {
      await node.stop()
    }
  }, 60_000)

  test("a plugin whose handler writes another plugin's table (CREATE TABLE IF NOT EXISTS, in another case) is refused a rebuild, the table's rows untouched; one whose migrations rename its table is rebuilt; one whose migrations create and drop another's table name leaves that table", async () => {
    class Trespass extends World {
      plugins(): Plugin[] {
        const trespass = definePlugin({
          name: 'trespass',
          handles: { 'test.trespass': { version: 1, payload: v.object({ n: v.number() }) } },
          migrations: [],
          apply: (event, { db }) => {
            // SQLite's names are the same in any case: PINGS is the pings plugin's table.
            db.run('CREATE TABLE IF NOT EXISTS PINGS (event_id TEXT PRIMARY KEY, n INTEGER NOT NULL)')
            db.run('INSERT INTO PINGS (event_id, n) VALUES (?, ?)', [event.event_id, event.payload.n])
          }
        })
        // Its migrations make its table under another name, then rename it: the table is its own.
        const renamed = definePlugin({
          name: 'renamed',
          handles: { 'test.entry': { version: 1, payload: v.object({ n: v.number() }) } },
          migrations: ['CREATE TABLE old_entries (n INTEGER NOT NULL)', 'ALTER TABLE old_entries RENAME TO entries'],
          apply: (event, { db }) => void db.run('INSERT INTO entries (n) VALUES (?)', [event.payload.n])
        })
        // Its migrations make a table of the name the pings plugin's takes later, and drop it again.
        const scratcher = definePlugin({
          name: 'scratcher',
          handles: { 'test.scratch': { version: 1, payload: v.object({ n: v.number() }) } },
          migrations: ['CREATE TABLE pings (x INTEGER)', 'DROP TABLE pings'],
          apply: () => {}
        })
        // A read-only view of its index (fts5vocab): its migrations make it, the swap copies no row of it.
        const vocab = definePlugin({
          name: 'vocab',
          handles: { 'test.word': { version: 1, payload: v.object({ body: v.string() }) } },
          migrations: ['CREATE VIRTUAL TABLE words USING fts5(body)', 'CREATE VIRTUAL TABLE words_terms USING fts5vocab(words, row)'],
          apply: (event, { db }) => void db.run('INSERT INTO words (body) VALUES (?)', [event.payload.body])
        })
        return [scratcher, ...super.plugins(), trespass, renamed, vocab]
      }
    }
    using tmp = tempDir()
    const { world, node } = await freshNode(tmp.path, new Trespass())
    try {
      for (const n of [1, 2]) await node.publish({ type: 'test.ping', payload: { n } })
      await node.publish({ type: 'test.trespass', payload: { n: 3 } })
      await node.plugins.drain()
      const pings = (): unknown[] => node.store.db.all('SELECT n FROM pings ORDER BY n')
      expect(pings()).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }])
      requestRebuild(node.store, 'trespass')
      node.plugins.changedElsewhere()
      await waitFor('the rebuild to end', () => world.logs.some((l) => l.fields.plugin === 'trespass' && (l.fields.reason === 'plugin_rebuilt' || l.fields.reason === 'plugin_rebuild_failed')))
      expect(world.logs.filter((l) => l.fields.reason === 'plugin_rebuild_failed').map((l) => l.msg)).toEqual([
        expect.stringContaining('wrote table(s) PINGS, which its migrations do not create and cairn.db already has')
      ])
      await node.plugins.drain()
      expect(pings()).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }])

      for (const n of [4, 5]) await node.publish({ type: 'test.entry', payload: { n } })
      await node.plugins.drain()
      const rebuilt = next(node, 'plugin:rebuilt', 'renamed')
      requestRebuild(node.store, 'renamed')
      node.plugins.changedElsewhere()
      await rebuilt.promise
      expect(node.store.db.all('SELECT n FROM entries ORDER BY n')).toEqual([{ n: 4 }, { n: 5 }])

      // Rebuilt, its migrations would create pings again where the pings plugin's table is: the swap fails, and
      // does not drop that table first.
      requestRebuild(node.store, 'scratcher')
      node.plugins.changedElsewhere()
      await waitFor('the rebuild to end', () => world.logs.some((l) => l.fields.plugin === 'scratcher' && (l.fields.reason === 'plugin_rebuilt' || l.fields.reason === 'plugin_rebuild_failed')))
      expect(world.logs.filter((l) => l.fields.plugin === 'scratcher' && l.fields.reason === 'plugin_rebuild_failed').map((l) => l.msg)).toEqual([expect.stringContaining('already exists')])
      expect(pings()).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }])

      await node.publish({ type: 'test.word', payload: { body: 'alpha beta' } })
      await node.plugins.drain()
      const vocabRebuilt = next(node, 'plugin:rebuilt', 'vocab')
      requestRebuild(node.store, 'vocab')
      node.plugins.changedElsewhere()
      await waitFor('the rebuild to end', () => world.logs.some((l) => l.fields.plugin === 'vocab' && (l.fields.reason === 'plugin_rebuilt' || l.fields.reason === 'plugin_rebuild_failed')))
      expect(world.logs.filter((l) => l.fields.plugin === 'vocab' && l.fields.reason === 'plugin_rebuild_failed').map((l) => l.msg)).toEqual([])
      await vocabRebuilt.promise
      expect(node.store.db.all("SELECT term, doc FROM words_terms WHERE term = 'alpha'")).toEqual([{ term: 'alpha', doc: 1 }])
    } finally {
      await node.stop()
    }
  }, 60_000)

  test("a plugin with a contentless FTS5 table (content='') is rebuilt in one transaction: a swap could copy none of its index", async () => {
    using tmp = tempDir()
    const world = new (class extends World {
      plugins() {
        return [
          definePlugin({
            name: 'docs',
            handles: { 'test.doc': { version: 1, payload: v.object({ body: v.string() }) } },
            migrations: ["CREATE VIRTUAL TABLE docs USING fts5(body, content='')"],
            apply: (event, { db }) => void db.run('INSERT INTO docs (body) VALUES (?)', [event.payload.body])
          })
        ]
      }
    })()
    const { node } = await freshNode(tmp.path, world)
    try {
      for (const body of ['red fox', 'blue whale', 'red panda']) await node.publish({ type: 'test.doc', payload: { body } })
      await node.plugins.drain()
      const red = (): unknown[] => node.store.db.all("SELECT rowid AS id FROM docs WHERE docs MATCH 'red' ORDER BY rowid")
      const before = red()
      expect(before).toHaveLength(2)
      const rebuilt = next(node, 'plugin:rebuilt', 'docs')
      requestRebuild(node.store, 'docs')
      node.plugins.changedElsewhere()
      await rebuilt.promise
      expect(world.logs.filter((l) => l.fields.reason === 'plugin_rebuild_failed' || l.fields.reason === 'plugin_rebuild_started').map((l) => l.msg)).toEqual([])
      expect(red()).toEqual(before)
    } finally {
      await node.stop()
    }
  }, 60_000)
})
