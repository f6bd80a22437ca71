import { afterAll, describe, expect, test } from 'bun:test'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { uuidv7 } from 'uuidv7'
import { openDatabase, type SqlDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { insertEvent } from '../../src/store/events.ts'
import { Store } from '../../src/store/store.ts'
import type { DeadLetter } from '../../src/store/pluginState.ts'
import { pluginHost, type PluginHost, type PluginHostComponents, type PluginHostInit } from '../../src/plugins/host.ts'
import { requestReplay as replay } from '../../src/plugins/replay.ts'
import { rebuildRequested, requestRebuild } from '../../src/plugins/rebuild.ts'
import { silentLog } from '../../src/log/logger.ts'
import { Metrics } from '../../src/metrics/metrics.ts'
import { CairnEventBus } from '../../src/node/events.ts'
import { loadPlugins, versionDisagreements } from '../../src/plugins/load.ts'
import type { ApplyContext, LoadedPlugin } from '../../src/plugins/types.ts'
import { definePlugin, upcaster, v, type Plugin } from '../../src/plugins/mod.ts'
import workspaceAccess from '../../plugins/workspace-access.ts'
import { waitFor } from '../helpers/process.ts'
import { resolveSettings } from '../../src/config/resolve.ts'
import { RUN_SETTINGS, toNodeConfig } from '../../src/config/catalog.ts'

const PRODUCERS = ['12D3KooWA1111111111111111111111111111111111111111111', '12D3KooWB2222222222222222222222222222222222222222222']
let seq = 0

function add(db: SqlDatabase, type: string, payload: unknown, opts: { version?: number; hlc?: string; producer?: string } = {}): string {
  const id = uuidv7()
  insertEvent(
    db,
    {
      event_id: id,
      type,
      version: opts.version ?? 1,
      producer: opts.producer ?? PRODUCERS[0],
      seq: ++seq,
      hlc: opts.hlc ?? `${Date.now()}-${(seq % 65536).toString(16).padStart(4, '0')}`,
      occurred_at: new Date().toISOString(),
      payload
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

const counter = definePlugin({
  name: 'counter',
  handles: { 'test.count': { version: 1, payload: v.object({ n: v.number() }) } },
  migrations: ['CREATE TABLE counted (event_id TEXT PRIMARY KEY, n INTEGER NOT NULL)'],
  apply(event, { db }) {
    db.run('INSERT INTO counted (event_id, n) VALUES (?, 1) ON CONFLICT (event_id) DO UPDATE SET n = n + 1', [event.event_id])
  }
})

const builtin = (...plugins: Plugin[]): LoadedPlugin[] => plugins.map((plugin) => ({ plugin, source: 'test' }))

const components = (db: SqlDatabase): PluginHostComponents => ({ store: new Store(db), log: silentLog, metrics: new Metrics(), events: new CairnEventBus() })
const listDeadLetters = (db: SqlDatabase): DeadLetter[] => new Store(db).pluginState.deadLetters()
const requestReplay = (db: SqlDatabase, select: Parameters<typeof replay>[1]): number => replay(new Store(db), select)

async function run(db: SqlDatabase, plugins: LoadedPlugin[], opts: Partial<PluginHostInit> = {}): Promise<PluginHost> {
  const host = pluginHost({ plugins, backoffMs: 5, maxAttempts: 3, ...opts })(components(db))
  await host.start()
  await host.drain()
  return host
}

describe('the plugin host', () => {
  test('applies each event exactly once, across restarts and duplicate notifications', async () => {
    const db = await database()
    for (let i = 0; i < 50; i++) add(db, 'test.count', { n: i })
    const first = await run(db, builtin(counter))
    for (let i = 0; i < 5; i++) first.notify()
    await first.drain()
    await first.stop()
    for (let i = 0; i < 50; i++) add(db, 'test.count', { n: i })
    const second = await run(db, builtin(counter))
    await second.stop()
    expect(db.all('SELECT count(*) AS rows, sum(n) AS applied FROM counted')).toEqual([{ rows: 100, applied: 100 }])
    expect(db.get<{ n: number }>("SELECT count(*) AS n FROM events WHERE state = 'done'")?.n).toBe(100)
  })

  test('a plugin added later backfills all 500 existing events exactly once', async () => {
    const db = await database()
    for (let i = 0; i < 500; i++) add(db, 'test.count', { n: i })
    await (await run(db, [])).stop()
    const host = await run(db, builtin(counter))
    await host.stop()
    await (await run(db, builtin(counter))).stop()
    expect(db.all('SELECT count(*) AS rows, max(n) AS most FROM counted')).toEqual([{ rows: 500, most: 1 }])
  })

  test('a throwing apply leaves no partial rows, is retried, dead-lettered, and replay fixes it once', async () => {
    const db = await database()
    let broken = true
    const flaky = definePlugin({
      name: 'flaky',
      handles: { 'test.count': { version: 1, payload: v.object({ n: v.number() }) } },
      migrations: ['CREATE TABLE flaky_rows (event_id TEXT PRIMARY KEY)'],
      apply(event, { db }) {
        db.run('INSERT INTO flaky_rows (event_id) VALUES (?)', [event.event_id])
        if (broken && (event.payload as { n: number }).n === 1) throw new Error('the backend is down')
      }
    })
    const ok = add(db, 'test.count', { n: 0 })
    const bad = add(db, 'test.count', { n: 1 })
    const after = add(db, 'test.count', { n: 2 })
    const host = await run(db, builtin(flaky))
    await waitFor('the dead letter', () => listDeadLetters(db).length === 1, 10_000)
    await host.drain()
    expect(db.all<{ event_id: string }>('SELECT event_id FROM flaky_rows ORDER BY event_id').map((r) => r.event_id)).toEqual([ok, after].sort())
    expect(listDeadLetters(db).map((d) => ({ event_id: d.event_id, plugin: d.plugin, attempts: d.attempts, error: d.error }))).toEqual([
      { event_id: bad, plugin: 'flaky', attempts: 3, error: 'the backend is down' }
    ])
    broken = false
    expect(requestReplay(db, { dead: true })).toBe(1)
    host.notify()
    await waitFor('the replayed event', () => db.get('SELECT 1 AS x FROM flaky_rows WHERE event_id = ?', [bad]) != null, 10_000)
    await host.drain()
    expect(listDeadLetters(db)).toEqual([])
    expect(requestReplay(db, { eventId: bad })).toBe(0)
    await host.stop()
    expect(db.get('SELECT count(*) AS n FROM flaky_rows')).toEqual({ n: 3 })
  })

  test('a payload that fails the schema is dead-lettered at once with the field path', async () => {
    const db = await database()
    const id = add(db, 'test.count', { n: 'one' })
    await (await run(db, builtin(counter))).stop()
    expect(listDeadLetters(db)[0]).toMatchObject({ event_id: id, attempts: 1 })
    expect(listDeadLetters(db)[0].error).toContain('payload.n')
  })

  test('an apply that returns a Promise is dead-lettered at once, keeps none of its writes, and cannot write after it returned', async () => {
    const db = await database()
    const id = add(db, 'test.count', { n: 1 })
    let later: Promise<string> | undefined
    const promising = definePlugin({
      name: 'promising',
      handles: { 'test.count': { version: 1, payload: v.object({ n: v.number() }) } },
      migrations: ['CREATE TABLE promised (event_id TEXT PRIMARY KEY)'],
      // A plain function returning a Promise, as a transpiled async function may be: the load cannot tell.
      apply(event, { db }) {
        db.run('INSERT INTO promised (event_id) VALUES (?)', [event.event_id])
        later = Promise.resolve().then(() => {
          try {
            db.run('INSERT INTO promised (event_id) VALUES (?)', ['after'])
            return 'written'
          } catch (err) {
            return (err as Error).message
          }
        })
        return later as unknown as undefined
      }
    })
    await (await run(db, builtin(promising))).stop()
    expect(await later).toBe('ctx.db was used after apply returned (apply must be synchronous; it runs inside the transaction that applies the event)')
    expect(db.all('SELECT event_id FROM promised')).toEqual([])
    expect(listDeadLetters(db).map((d) => ({ event_id: d.event_id, attempts: d.attempts, error: d.error }))).toEqual([
      { event_id: id, attempts: 1, error: 'apply returned a Promise: apply must be synchronous (it runs inside the transaction that applies the event); put async work in effect' }
    ])
  })

  test('events of a newer version are held, then applied through an upcaster once a plugin knows them', async () => {
    const db = await database()
    const v2 = add(db, 'test.count', { count: 7 }, { version: 2 })
    await (await run(db, builtin(counter))).stop()
    expect(db.all('SELECT plugin, event_id, version FROM plugin_held')).toEqual([{ plugin: 'counter', event_id: v2, version: 2 }])
    const v1 = add(db, 'test.count', { n: 1 }, { version: 1 })
    const upgraded = definePlugin({
      name: counter.name,
      migrations: counter.migrations,
      handles: {
        'test.count': {
          version: 2,
          payload: v.object({ count: v.number() }),
          upcast: { 1: upcaster(v.object({ n: v.number() }), (p) => ({ count: p.n })) },
          apply(event, { db }) {
            db.run('INSERT INTO counted (event_id, n) VALUES (?, 1) ON CONFLICT (event_id) DO UPDATE SET n = n + 1', [event.event_id])
          }
        }
      }
    })
    await (await run(db, builtin(upgraded))).stop()
    expect(db.all('SELECT event_id FROM counted ORDER BY event_id').map((r: any) => r.event_id)).toEqual([v1, v2].sort())
    expect(db.all('SELECT * FROM plugin_held')).toEqual([])
  })

  test('a held event that the newer version then cannot apply is dead-lettered and no longer counted as held', async () => {
    const db = await database()
    const bad = add(db, 'test.count', { count: 'seven' }, { version: 2 })
    await (await run(db, builtin(counter))).stop()
    const state = new Store(db).pluginState
    expect({ held: state.heldCount(), by: state.heldBy() }).toEqual({ held: 1, by: [{ plugin: 'counter', type: 'test.count', version: 2, count: 1 }] })
    const v2 = definePlugin({
      name: 'counter',
      migrations: counter.migrations,
      handles: { 'test.count': { version: 2, payload: v.object({ count: v.number() }), apply() {} } }
    })
    expect(versionDisagreements(builtin(counter, { ...v2, name: 'counter2' }))).toEqual([
      "plugins disagree on test.count: counter2 read(s) v2, counter only up to v1; test.count events newer than a plugin's version are held for it (cairn status shows them)"
    ])
    await (await run(db, builtin(v2))).stop()
    expect({ held: state.heldCount(), dead: listDeadLetters(db).map((d) => d.event_id) }).toEqual({ held: 0, dead: [bad] })
  })

  test('validatePublish names the field, pins an omitted version to 1, and refuses types and versions no plugin reads', async () => {
    const db = await database()
    const v2 = definePlugin({
      name: 'counter',
      handles: { 'test.count': { version: 2, payload: v.strictObject({ count: v.number() }), upcast: { 1: upcaster(v.strictObject({ n: v.number() }), (p) => ({ count: p.n })) }, apply() {} } }
    })
    const host = await run(db, builtin(workspaceAccess, v2))
    expect(host.validatePublish('workspace.invited', undefined, { workspace_id: 'w', invitee: 'nope', role: 'member', invited_by: 'a@example.com' })).toEqual({
      version: 1,
      issues: [{ path: 'payload.invitee', message: 'Invalid email', code: 'email' }]
    })
    expect(host.validatePublish('test.count', undefined, { n: 1 })).toEqual({ version: 1, issues: [] })
    // A valid v2 payload without its version is read as v1, and told so first.
    expect(host.validatePublish('test.count', undefined, { count: 1 }).issues).toEqual([
      { path: 'version', message: 'a publish without a version is v1, and this payload is a valid v2: pass "version": 2', code: 'required' },
      { path: 'payload.n', message: 'is required', code: 'required' },
      { path: 'payload.count', message: 'is not a known field', code: 'unknown_field' }
    ])
    expect(host.validatePublish('test.count', undefined, { count: 'x' }).issues.map((i) => i.path)).toEqual(['payload.n', 'payload.count'])
    expect(host.validatePublish('test.count', 2, { count: 1, extra: true }).issues).toEqual([{ path: 'payload.extra', message: 'is not a known field', code: 'unknown_field' }])
    expect(host.validatePublish('test.count', 3, { count: 1 }).issues).toEqual([{ path: 'version', message: 'no local plugin reads test.count v3 (known versions: 1, 2)', code: 'unknown_version' }])
    expect(host.validatePublish('other.type', undefined, { anything: true }).issues).toEqual([
      {
        path: 'type',
        message:
          'no local plugin handles other.type (known types: permission.revoked, test.count, workspace.invited); a node that should publish types only other nodes handle runs with --allow-unknown-types',
        code: 'unknown_type'
      }
    ])
    await host.stop()
    for (const allow of [true, ['other.type']]) {
      const open = pluginHost({ plugins: builtin(workspaceAccess), allowUnknownTypes: allow })(components(db))
      expect(open.validatePublish('other.type', undefined, { anything: true })).toEqual({ version: 1, issues: [] })
    }
  })

  test('allow-unknown-types is a flag, or a list of types in config.json or the environment', () => {
    const resolve = (file: Record<string, unknown>, flags: Record<string, unknown> = {}, env: Record<string, string> = {}) =>
      toNodeConfig(resolveSettings(RUN_SETTINGS, { data: '/tmp/x', ...flags }, env, file)).allowUnknownTypes
    expect([
      resolve({}),
      resolve({}, { 'allow-unknown-types': true }),
      resolve({ 'allow-unknown-types': ['document.shared'] }),
      resolve({}, {}, { CAIRN_ALLOW_UNKNOWN_TYPES: 'document.shared, a.b' }),
      resolve({}, {}, { CAIRN_ALLOW_UNKNOWN_TYPES: 'false' })
    ]).toEqual([false, true, ['document.shared'], ['document.shared', 'a.b'], false])
    expect(() => resolve({ 'allow-unknown-types': ['Not A Type'] })).toThrow('Invalid setting allow-unknown-types (from "allow-unknown-types" in config.json)')
  })

  test('apply reads tolerantly: a field a strict schema does not know (added by a newer plugin) is dropped, not dead-lettered', async () => {
    const db = await database()
    const id = add(db, 'workspace.invited', { workspace_id: 'w', invitee: 'ann@example.com', role: 'member', invited_by: 'b@example.com', note: 'added in a newer plugin' })
    await (await run(db, builtin(workspaceAccess))).stop()
    expect({ dead: listDeadLetters(db), rows: db.all('SELECT DISTINCT event_id FROM workspace_access') }).toEqual({ dead: [], rows: [{ event_id: id }] })
  })

  test('a rebuild records the state keys the plugin declares now: events of keys it no longer declares are compacted as its new keys say', async () => {
    const db = await database()
    const Set_ = v.strictObject({ id: v.string(), value: v.string() })
    const upsert = (e: { payload: { id: string; value: string } }, { db }: ApplyContext) =>
      void db.run('INSERT INTO vals (id, value) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET value = excluded.value', [e.payload.id, e.payload.value])
    const migrations = ['CREATE TABLE vals (id TEXT PRIMARY KEY, value TEXT NOT NULL)']
    // v1 keys too fine (each value its own key): nothing is ever superseded
    const fine = definePlugin({ name: 'vals', handles: { 'test.set': { version: 1, payload: Set_, apply: upsert, keys: (p) => [[p.id, p.value]] } }, migrations })
    add(db, 'test.set', { id: 'x', value: 'one' })
    const first = seq
    add(db, 'test.set', { id: 'x', value: 'two' })
    await (await run(db, builtin(fine))).stop()
    const store = new Store(db)
    expect([...store.stateKeys.superseded(PRODUCERS[0], [first])]).toEqual([])
    // v2 fixes the keys; a rebuild re-applies everything under them
    const right = definePlugin({ name: 'vals', handles: { 'test.set': { version: 1, payload: Set_, apply: upsert, keys: (p) => [[p.id]] } }, migrations })
    requestRebuild(store, 'vals')
    await (await run(db, builtin(right))).stop()
    expect(rebuildRequested(store, 'vals')).toBe(false)
    expect([...store.stateKeys.superseded(PRODUCERS[0], [first])]).toEqual([first])
  })

  test('a rebuild re-applies the whole history into fresh tables once, so a new column is backfilled', async () => {
    const db = await database()
    const Named = v.strictObject({ id: v.string(), name: v.string() })
    const names = definePlugin({
      name: 'names',
      handles: { 'test.named': { version: 1, payload: Named, apply: (e, { db }) => void db.run('INSERT INTO names (id, name) VALUES (?, ?)', [e.payload.id, e.payload.name]) } },
      migrations: ['CREATE TABLE names (id TEXT PRIMARY KEY, name TEXT NOT NULL); CREATE VIEW name_count AS SELECT count(*) AS n FROM names']
    })
    add(db, 'test.named', { id: 'a', name: 'Ann', note: 'published by a newer node' })
    await (await run(db, builtin(names))).stop()
    add(db, 'test.named', { id: 'b', name: 'Bob', note: 'second' })
    const WithNote = v.strictObject({ ...Named.entries, note: v.optional(v.string()) })
    const noted = definePlugin({
      name: 'names',
      handles: {
        'test.named': {
          version: 1,
          payload: WithNote,
          apply: (e, { db }) => void db.run('INSERT INTO names (id, name, note) VALUES (?, ?, ?)', [e.payload.id, e.payload.name, e.payload.note ?? null])
        }
      },
      migrations: [...(names.migrations ?? []), 'ALTER TABLE names ADD COLUMN note TEXT']
    })
    const host = await run(db, builtin(noted))
    expect(db.all('SELECT id, note FROM names ORDER BY id')).toEqual([
      { id: 'a', note: null },
      { id: 'b', note: 'second' }
    ])
    requestRebuild(new Store(db), 'names')
    requestRebuild(new Store(db), 'names')
    host.notify()
    await host.drain()
    expect(rebuildRequested(new Store(db), 'names')).toBe(false)
    expect(db.all('SELECT id, note FROM names ORDER BY id')).toEqual([
      { id: 'a', note: 'published by a newer node' },
      { id: 'b', note: 'second' }
    ])
    expect(db.all("SELECT count(*) AS n, count(DISTINCT event_id) AS once FROM plugin_applied WHERE plugin = 'names'")).toEqual([{ n: 2, once: 2 }])
    expect(db.all('SELECT n FROM name_count')).toEqual([{ n: 2 }])
    await host.stop()
  })

  test('invitations and revocations converge to the same access table in any arrival order', async () => {
    const ws = 'w1'
    const events = [
      { type: 'workspace.invited', payload: { workspace_id: ws, invitee: 'ann@example.com', role: 'admin', invited_by: 'boss@example.com' }, hlc: '1800000000000-0000', producer: PRODUCERS[0] },
      { type: 'permission.revoked', payload: { workspace_id: ws, subject: 'ann@example.com', permission: 'admin' }, hlc: '1800000000001-0000', producer: PRODUCERS[1] },
      { type: 'workspace.invited', payload: { workspace_id: ws, invitee: 'bob@example.com', role: 'viewer', invited_by: 'boss@example.com' }, hlc: '1800000000003-0000', producer: PRODUCERS[1] },
      { type: 'permission.revoked', payload: { workspace_id: ws, subject: 'bob@example.com', permission: 'read' }, hlc: '1800000000002-0000', producer: PRODUCERS[0] }
    ]
    const tables: unknown[] = []
    for (const order of [
      [0, 1, 2, 3],
      [3, 2, 1, 0],
      [1, 3, 0, 2]
    ]) {
      const db = await database()
      for (const i of order) add(db, events[i].type, events[i].payload, { hlc: events[i].hlc, producer: events[i].producer })
      await (await run(db, builtin(workspaceAccess))).stop()
      tables.push(db.all('SELECT workspace_id, subject, permissions FROM workspace_members ORDER BY subject'))
    }
    // ann's admin was revoked after the invitation; bob's read revocation is older than his invitation
    expect(tables[0]).toEqual([
      { workspace_id: ws, subject: 'ann@example.com', permissions: 'member,read,write' },
      { workspace_id: ws, subject: 'bob@example.com', permissions: 'read' }
    ])
    expect(tables[1]).toEqual(tables[0])
    expect(tables[2]).toEqual(tables[0])
  })
})

describe('loading plugins', () => {
  const made: string[] = []
  const dir = (files: Record<string, string>): string => {
    const d = mkdtempSync(join(tmpdir(), 'cairn-plugins-'))
    made.push(d)
    for (const [name, text] of Object.entries(files)) writeFileSync(join(d, name), text)
    return d
  }
  afterAll(() => {
    for (const d of made) rmSync(d, { recursive: true, force: true })
  })

  test('loads the example plugins from a directory (the function form and an @cairn/plugin import), skipping their test', async () => {
    const loaded = await loadPlugins([], [resolve(import.meta.dir, '../../examples')])
    expect(loaded.map((l) => [l.plugin.name, l.source.split('/').at(-1)])).toEqual([
      ['apply-counter', 'apply-counter.js'],
      ['document-sharing', 'document-sharing.ts']
    ])
  })

  test('a plugin file that does not build shows the compiler message with its file, line and column', async () => {
    const d = dir({ 'syntax.ts': 'export default {\n  name: "x",\n  handles: { a: ( }\n}\n' })
    await expect(loadPlugins([], [d])).rejects.toThrow(`Cannot load plugin from ${join(d, 'syntax.ts')}: ${join(d, 'syntax.ts')}:3:`)
  })

  test('--plugins skips tests, specs, declarations and node_modules', async () => {
    const plugin = "export default ({ v, definePlugin }) => definePlugin({ name: 'only', handles: { 'a.b': { version: 1, payload: v.unknown() } }, apply () {} })"
    const d = dir({ 'only.js': plugin, 'only.test.ts': 'throw new Error("a test is not a plugin")', 'only.spec.js': 'throw new Error("nor a spec")', 'only.d.ts': 'export {}' })
    mkdirSync(join(d, 'node_modules'))
    writeFileSync(join(d, 'node_modules', 'x.js'), 'throw new Error("nor a dependency")')
    expect((await loadPlugins([], [d])).map((l) => l.plugin.name)).toEqual(['only'])
  })

  test('a module beside the plugins is refused as a plugin without a default export, saying to put it in a subfolder, where it is not loaded', async () => {
    const plugin = (from: string): string =>
      `import { TYPE } from '${from}'\nexport default ({ v, definePlugin }) => definePlugin({ name: 'shared', handles: { [TYPE]: { version: 1, payload: v.unknown() } }, apply () {} })`
    const util = "export const TYPE = 'a.b'"
    const beside = dir({ 'shared.js': plugin('./util.js'), 'util.js': util })
    await expect(loadPlugins([], [beside])).rejects.toThrow(
      `Cannot load plugin from ${join(beside, 'util.js')}: it has no default export (export default definePlugin({...}) or ({ v, definePlugin }) => ...); every .js, .mjs, .ts and .mts file directly in ${beside} is loaded as a plugin: put a module the plugins share in a subfolder (such as lib/), which is not searched`
    )
    const inLib = dir({ 'shared.js': plugin('./lib/util.js') })
    mkdirSync(join(inLib, 'lib'))
    writeFileSync(join(inLib, 'lib', 'util.js'), util)
    expect((await loadPlugins([], [inLib])).map((l) => [l.plugin.name, Object.keys(l.plugin.handles)])).toEqual([['shared', ['a.b']]])
  })

  test('a broken plugin file, a bad shape and a duplicate name each name the file', async () => {
    const d = dir({ 'broken.js': 'export default {{{' })
    await expect(loadPlugins([], [d])).rejects.toThrow(join(d, 'broken.js'))
    const shape = dir({ 'shape.js': "export default { name: 'shape', handles: { 'a.b': { version: 0 } } }" })
    await expect(loadPlugins([], [shape])).rejects.toThrow(/shape\.js: .*handles/)
    const dup = dir({ 'a.js': "export default ({ v, definePlugin }) => definePlugin({ name: 'workspace-access', handles: { 'a.b': { version: 1, payload: v.unknown() } }, apply () {} })" })
    await expect(loadPlugins([workspaceAccess], [dup])).rejects.toThrow(/a\.js: built-in already loaded/)
    const sync = 'Expected a synchronous function: it runs inside the transaction that applies the event, and what an async one does after its first await is outside it (put async work in effect)'
    const async = dir({
      'async.js': "export default ({ v, definePlugin }) => definePlugin({ name: 'async', handles: { 'a.b': { version: 1, payload: v.unknown(), async apply () {} } } })"
    })
    await expect(loadPlugins([], [async])).rejects.toThrow(`Cannot load plugin "async" from ${join(async, 'async.js')}: handles.a.b.apply: ${sync}`)
    const asyncKeys = dir({
      'keys.js': "export default ({ v, definePlugin }) => definePlugin({ name: 'keys', handles: { 'a.b': { version: 1, payload: v.unknown(), keys: async () => [] } }, apply () {} })"
    })
    await expect(loadPlugins([], [asyncKeys])).rejects.toThrow(`Cannot load plugin "keys" from ${join(asyncKeys, 'keys.js')}: handles.a.b.keys: ${sync}`)
    for (const d2 of [d, shape, dup, async, asyncKeys]) rmSync(d2, { recursive: true })
  })

  test('a failing migration stops start with the plugin, file and migration named', async () => {
    const db = await database()
    const bad = definePlugin({ name: 'bad-sql', handles: { 'a.b': { version: 1, payload: v.unknown() } }, migrations: ['CREATE TABLE ok (x)', 'CREATE TABLE nope ('], apply() {} })
    const host = pluginHost({ plugins: [{ plugin: bad, source: '/plugins/bad.js' }] })(components(db))
    await expect(host.start()).rejects.toThrow('Cannot start plugin "bad-sql" from /plugins/bad.js: migration 2 failed')
  })

  test('a start refuses a plugin whose applied migration was edited, or that has fewer migrations than this node applied; a migration appended runs', async () => {
    const db = await database()
    const release = (...migrations: string[]): LoadedPlugin[] => [
      { plugin: definePlugin({ name: 'notes', handles: { 'a.b': { version: 1, payload: v.unknown() } }, migrations, apply() {} }), source: '/plugins/notes.js' }
    ]
    const first = 'CREATE TABLE notes (id TEXT PRIMARY KEY)'
    const second = 'ALTER TABLE notes ADD COLUMN body TEXT'
    await (await run(db, release(first, second))).stop()
    await expect(run(db, release('CREATE TABLE notes (id TEXT PRIMARY KEY, extra TEXT)', second))).rejects.toThrow(
      'Cannot start plugin "notes" from /plugins/notes.js: its migration 1 is not the text this node applied (a released migration was edited; the tables it made here are the old text\'s; line ends and spaces ending a line do not count): restore that migration\'s text, and put the change in a new migration after the last'
    )
    await expect(run(db, release(first))).rejects.toThrow(
      'Cannot start plugin "notes" from /plugins/notes.js: it has 1 migration(s), and this node applied 2 of the plugin\'s (a newer release of it ran here, and its tables are that release\'s): run that release or a newer one'
    )
    await (await run(db, release(first, second, 'ALTER TABLE notes ADD COLUMN extra TEXT'))).stop()
    expect(db.all('SELECT name FROM pragma_table_info(?) ORDER BY cid', ['notes'])).toEqual([{ name: 'id' }, { name: 'body' }, { name: 'extra' }])
  })

  test('migrations applied before their digests were recorded take the digest of their text at the next start, and are checked from then on', async () => {
    const db = await database()
    const notes = (migration: string): LoadedPlugin[] => [
      { plugin: definePlugin({ name: 'notes', handles: { 'a.b': { version: 1, payload: v.unknown() } }, migrations: [migration], apply() {} }), source: '/plugins/notes.js' }
    ]
    await (await run(db, notes('CREATE TABLE notes (id TEXT PRIMARY KEY)'))).stop()
    // As a cairn that did not record digests left it.
    db.run('UPDATE plugin_migrations SET digest = NULL')
    await (await run(db, notes('CREATE TABLE notes (id TEXT PRIMARY KEY)'))).stop()
    expect(db.all('SELECT version, length(digest) AS digest FROM plugin_migrations')).toEqual([{ version: 1, digest: 64 }])
    await expect(run(db, notes('CREATE TABLE notes (id TEXT PRIMARY KEY, extra TEXT)'))).rejects.toThrow('its migration 1 is not the text this node applied')
  })
})
