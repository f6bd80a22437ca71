import { describe, expect, test } from 'bun:test'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { cairn, NodeProcess, tempDir, waitFor } from '../helpers/process.ts'
import { query } from '../helpers/db.ts'

// One plugin file, three releases. The directories hold no node_modules: the binary provides @cairn/plugin.
const TABLE = 'CREATE TABLE shares (producer TEXT NOT NULL, event_id TEXT NOT NULL, document_id TEXT NOT NULL, person TEXT NOT NULL, PRIMARY KEY (producer, event_id, person))'
const HEAD = "import { definePlugin, upcaster, v } from '@cairn/plugin'\nconst V1 = v.strictObject({ document_id: v.string(), with: v.string() })\n"
const INSERT = "'INSERT INTO shares (producer, event_id, document_id, person, note) VALUES (?, ?, ?, ?, ?)'"
const RELEASES = {
  v1: `${HEAD}export default definePlugin({ name: 'shares', handles: { 'document.shared': { version: 1, payload: V1,
    apply (e, { db }) { db.run('INSERT INTO shares (producer, event_id, document_id, person) VALUES (?, ?, ?, ?)', [e.producer, e.event_id, e.payload.document_id, e.payload.with]) } } },
    migrations: [${JSON.stringify(TABLE)}] })\n`,
  // An optional field added within version 1: nodes still on v1 read such events and ignore the field.
  note: `${HEAD}const V1n = v.strictObject({ ...V1.entries, note: v.optional(v.string()) })
export default definePlugin({ name: 'shares', handles: { 'document.shared': { version: 1, payload: V1n,
    apply (e, { db }) { db.run(${INSERT}, [e.producer, e.event_id, e.payload.document_id, e.payload.with, e.payload.note ?? null]) } } },
    migrations: [${JSON.stringify(TABLE)}, 'ALTER TABLE shares ADD COLUMN note TEXT'] })\n`,
  // Version 2: several people at once; version 1 events are read through an upcaster.
  v2: `${HEAD}const V1n = v.strictObject({ ...V1.entries, note: v.optional(v.string()) })
const V2 = v.strictObject({ document_id: v.string(), shared_with: v.array(v.string()), note: v.optional(v.string()) })
export default definePlugin({ name: 'shares', handles: { 'document.shared': { version: 2, payload: V2,
    upcast: { 1: upcaster(V1n, (old) => ({ document_id: old.document_id, shared_with: [old.with], note: old.note })) },
    apply (e, { db }) { for (const person of e.payload.shared_with) db.run(${INSERT}, [e.producer, e.event_id, e.payload.document_id, person, e.payload.note ?? null]) } } },
    migrations: [${JSON.stringify(TABLE)}, 'ALTER TABLE shares ADD COLUMN note TEXT'] })\n`
}

const SHARES = 'SELECT producer, event_id, document_id, person, note FROM shares ORDER BY producer, event_id, person'

describe('a rolling upgrade of three nodes', () => {
  test('an optional field, then a v2 with an upcaster, node by node: nothing dead-lettered or lost, and a rebuild makes the tables equal', async () => {
    using tmp = tempDir()
    const dirs = ['a', 'b', 'c'].map((n) => join(tmp.path, `plugins-${n}`))
    const release = (i: number, which: keyof typeof RELEASES): void => {
      mkdirSync(dirs[i], { recursive: true })
      writeFileSync(join(dirs[i], 'shares.ts'), RELEASES[which])
    }
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    await using c = await NodeProcess.init(tmp.path, 'c', { network: a })
    const nodes = [a, b, c]
    for (let i = 0; i < 3; i++) release(i, 'v1')
    const others = (i: number): string[] => nodes.filter((_, j) => j !== i && nodes[j].proc != null).flatMap((n) => ['--bootstrap', n.addrs[0]])
    const restart = async (i: number): Promise<void> => {
      if (nodes[i].proc != null) await nodes[i].stop()
      await nodes[i].start(['--plugins', dirs[i], ...others(i)], { CAIRN_ALLOW_UNKNOWN_TYPES: 'false' })
    }
    for (let i = 0; i < 3; i++) await restart(i)
    let published = 0
    const everywhere = async (what: string): Promise<void> => {
      for (const n of nodes) await waitFor(`${what} on ${n.dir}`, () => query(n.dir, 'SELECT count(*) AS n FROM events')[0].n === published, 60_000)
      for (const n of nodes) await waitFor(`${what}: the plugin done on ${n.dir}`, async () => (await n.status()).plugins.backlog === 0, 60_000)
    }
    const share = async (n: NodeProcess, body: Record<string, unknown>): Promise<void> => {
      await n.publish({ type: 'document.shared', ...body })
      published++
    }

    for (const [i, n] of nodes.entries()) await share(n, { payload: { document_id: `d${i}`, with: `p${i}@example.com` } })
    await everywhere('the v1 events')

    // 1. An optional field on node a alone: b and c, still on v1, apply its events without the field.
    release(0, 'note')
    await restart(0)
    await share(a, { payload: { document_id: 'd3', with: 'ann@example.com', note: 'from a' } })
    const refused = await fetch(`http://${b.http}/v1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${b.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'document.shared', payload: { document_id: 'x', with: 'y', note: 'b does not know note yet' } })
    })
    expect(refused.status).toBe(400)
    await everywhere('the event with a note')

    // 2. v2 on node a: its v2 events wait (held) on b and c; clients that send no version still publish v1 everywhere.
    release(0, 'v2')
    await restart(0)
    await share(a, { version: 2, payload: { document_id: 'd4', shared_with: ['bob@example.com', 'cy@example.com'], note: 'v2' } })
    await share(b, { payload: { document_id: 'd5', with: 'dee@example.com' } })
    await share(a, { payload: { document_id: 'd6', with: 'eve@example.com', note: 'v1 from an upgraded node' } })
    await everywhere('the v2 event')
    for (const n of [b, c]) {
      expect((await n.status()).plugins.held_by).toEqual([{ plugin: 'shares', type: 'document.shared', version: 2, count: 1 }])
      expect(n.logs).toContain('"reason":"plugin_event_held"')
    }
    const text = (await cairn(['status', '--data', b.dir])).stdout
    expect(text).toContain('plugins   backlog 0, retrying 0, dead letters 0, held 1, effects failing 0, given up 0\n  held by shares: 1 document.shared v2')
    expect(text).toContain('loaded    workspace-access 1.0.0 (workspace.invited v1, permission.revoked v1); shares (document.shared v1)')

    // 3. b, then c, upgraded one at a time: the held event is applied at start.
    for (const i of [1, 2]) {
      release(i, 'v2')
      await restart(i)
    }
    await everywhere('the upgraded nodes')
    for (const n of nodes) {
      const s = await n.status()
      expect({ held: s.plugins.held, dead: s.plugins.dead_letters, events: s.events }).toEqual({ held: 0, dead: 0, events: published })
    }
    // b and c applied a's note event before they had the column: rebuilt, every table is equal.
    expect(query(b.dir, SHARES)).not.toEqual(query(a.dir, SHARES))
    for (const n of nodes) {
      const r = await cairn(['plugins', 'rebuild', 'shares', '--data', n.dir])
      expect(r.code).toBe(0)
      await waitFor(`the rebuild on ${n.dir}`, () => query(n.dir, "SELECT 1 FROM meta WHERE key = 'plugin_rebuild:shares'").length === 0, 30_000)
    }
    const tables = nodes.map((n) => query(n.dir, SHARES))
    expect(tables[0]).toHaveLength(8)
    expect(tables[0].filter((r) => r.note != null).map((r) => r.note)).toEqual(expect.arrayContaining(['from a', 'v2', 'v2', 'v1 from an upgraded node']))
    expect(tables[1]).toEqual(tables[0])
    expect(tables[2]).toEqual(tables[0])
  }, 240_000)
})
