import { describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
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
import { silentLog } from '../../src/log/logger.ts'
import { Metrics } from '../../src/metrics/metrics.ts'
import { CairnEventBus } from '../../src/node/events.ts'
import { loadPlugins } from '../../src/plugins/load.ts'
import type { LoadedPlugin } from '../../src/plugins/types.ts'
import { definePlugin, v, type Plugin } from '../../src/plugins/mod.ts'
import workspaceAccess from '../../plugins/workspace-access.ts'
import { waitFor } from '../helpers/process.ts'

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

  test('events of a newer version are held, then applied through an upcaster once a plugin knows them', async () => {
    const db = await database()
    const v2 = add(db, 'test.count', { count: 7 }, { version: 2 })
    await (await run(db, builtin(counter))).stop()
    expect(db.all('SELECT plugin, event_id, version FROM plugin_held')).toEqual([{ plugin: 'counter', event_id: v2, version: 2 }])
    const v1 = add(db, 'test.count', { n: 1 }, { version: 1 })
    const upgraded = definePlugin({
      ...counter,
      handles: { 'test.count': { version: 2, payload: v.object({ count: v.number() }), upcast: { 1: { payload: v.object({ n: v.number() }), to: (p: { n: number }) => ({ count: p.n }) } } } }
    })
    await (await run(db, builtin(upgraded))).stop()
    expect(db.all('SELECT event_id FROM counted ORDER BY event_id').map((r: any) => r.event_id)).toEqual([v1, v2].sort())
    expect(db.all('SELECT * FROM plugin_held')).toEqual([])
  })

  test('validatePublish names the field and picks the newest declared version', async () => {
    const db = await database()
    const host = await run(db, builtin(workspaceAccess))
    expect(host.validatePublish('workspace.invited', undefined, { workspace_id: 'w', invitee: 'nope', role: 'member', invited_by: 'a@example.com' })).toEqual({
      version: 1,
      issues: [{ path: 'payload.invitee', message: 'Invalid email', code: 'email' }]
    })
    expect(host.validatePublish('other.type', undefined, { anything: true })).toEqual({ version: 1, issues: [] })
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
  const dir = (files: Record<string, string>): string => {
    const d = mkdtempSync(join(tmpdir(), 'cairn-plugins-'))
    for (const [name, text] of Object.entries(files)) writeFileSync(join(d, name), text)
    return d
  }

  test('loads the example plugin from a directory, with the SDK passed in', async () => {
    const loaded = await loadPlugins([], [resolve(import.meta.dir, '../../examples')])
    expect(loaded.map((l) => [l.plugin.name, l.source.endsWith('apply-counter.js')])).toEqual([['apply-counter', true]])
  })

  test('a broken plugin file, a bad shape and a duplicate name each name the file', async () => {
    const d = dir({ 'broken.js': 'export default {{{' })
    await expect(loadPlugins([], [d])).rejects.toThrow(join(d, 'broken.js'))
    const shape = dir({ 'shape.js': "export default { name: 'shape', handles: { 'a.b': { version: 0 } } }" })
    await expect(loadPlugins([], [shape])).rejects.toThrow(/shape\.js: .*handles/)
    const dup = dir({ 'a.js': "export default ({ v, definePlugin }) => definePlugin({ name: 'workspace-access', handles: { 'a.b': { version: 1, payload: v.unknown() } }, apply () {} })" })
    await expect(loadPlugins([workspaceAccess], [dup])).rejects.toThrow(/a\.js: built-in already loaded/)
    for (const d2 of [d, shape, dup]) rmSync(d2, { recursive: true })
  })

  test('a failing migration stops start with the plugin, file and migration named', async () => {
    const db = await database()
    const bad = definePlugin({ name: 'bad-sql', handles: { 'a.b': { version: 1, payload: v.unknown() } }, migrations: ['CREATE TABLE ok (x)', 'CREATE TABLE nope ('], apply() {} })
    const host = pluginHost({ plugins: [{ plugin: bad, source: '/plugins/bad.js' }] })(components(db))
    await expect(host.start()).rejects.toThrow('Cannot start plugin "bad-sql" from /plugins/bad.js: migration 2 failed')
  })
})
