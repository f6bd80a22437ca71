import { describe, expect, test } from 'bun:test'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { cairn, EXAMPLES, invite, NodeProcess, tempDir, waitFor } from '../helpers/process.ts'
import { appliedCounts, query } from '../helpers/db.ts'

describe('plugins in the binary', () => {
  test('the example plugin applies 2,000 events exactly once on both nodes, though the consumer is SIGKILLed mid-stream', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    await a.start(['--plugins', EXAMPLES])
    await b.start(['--plugins', EXAMPLES, '--bootstrap', a.addrs[0]])
    let next = 0
    const publishing = Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < 2000) await a.publish(invite(next++))
      })
    )
    await waitFor('b to apply some', () => appliedCounts(b.dir).rows > 100, 60_000)
    await b.stop('SIGKILL')
    await b.start(['--plugins', EXAMPLES, '--bootstrap', a.addrs[0]])
    await publishing
    for (const n of [a, b]) {
      await waitFor(`2000 counted on ${n.dir}`, () => appliedCounts(n.dir).rows === 2000, 120_000)
      expect(appliedCounts(n.dir)).toEqual({ rows: 2000, once: 2000, doubled: 0 })
    }
    expect(query(b.dir, 'SELECT count(*) AS n FROM events')).toEqual([{ n: 2000 }])
  })

  test('a broken plugin file stops startup with a message naming the file', async () => {
    using tmp = tempDir()
    const plugins = join(tmp.path, 'plugins')
    mkdirSync(plugins)
    writeFileSync(join(plugins, 'broken.js'), 'export default ({ v }) => ({ name: "broken", handles: {} })')
    const node = await NodeProcess.init(tmp.path, 'n')
    const r = await cairn(['run', '--data', node.dir, '--plugins', plugins, '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(join(plugins, 'broken.js'))
    expect(r.stderr).not.toContain('    at ')
  })

  test('publishing a payload that a local plugin rejects answers 400 with the field path', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await a.start()
    const res = await fetch(`http://${a.http}/v1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${a.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'workspace.invited', payload: { workspace_id: 'w', invitee: 'not-an-email', role: 'member', invited_by: 'a@example.com' } })
    })
    expect(res.status).toBe(400)
    expect((await res.json()).error.issues).toEqual([{ path: 'payload.invitee', message: 'Invalid email', code: 'email' }])
    const cli = await cairn(['publish', '--data', a.dir, '--type', 'workspace.invited', '--payload', '{"workspace_id":"w","invitee":"x","role":"member","invited_by":"a@example.com"}'])
    expect(cli.code).toBe(1)
    expect(cli.stderr).toContain('payload.invitee: Invalid email')
  })

  test('publishing a type no local plugin handles answers 400 listing the known types, unless --allow-unknown-types', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await a.start([], { CAIRN_ALLOW_UNKNOWN_TYPES: 'false' })
    const post = (body: unknown) =>
      fetch(`http://${a.http}/v1/events`, { method: 'POST', headers: { authorization: `Bearer ${a.token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
    const res = await post({ type: 'document.sharedd', payload: {} })
    expect(res.status).toBe(400)
    expect((await res.json()).error.issues).toEqual([
      {
        path: 'type',
        message:
          'no local plugin handles document.sharedd (known types: permission.revoked, workspace.invited); a node that should publish types only other nodes handle runs with --allow-unknown-types',
        code: 'unknown_type'
      }
    ])
    const version = await post({ type: 'workspace.invited', version: 2, payload: {} })
    expect(version.status).toBe(400)
    expect((await version.json()).error.issues).toEqual([{ path: 'version', message: 'no local plugin reads workspace.invited v2 (known versions: 1)', code: 'unknown_version' }])
    await a.stop()
    await a.start(['--allow-unknown-types'], { CAIRN_ALLOW_UNKNOWN_TYPES: 'false' })
    expect((await post({ type: 'document.sharedd', payload: {} })).status).toBe(201)
  })

  test('invitations and revocations published on different nodes converge to one access table everywhere', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    await a.start()
    await b.start(['--bootstrap', a.addrs[0]])
    // ann: invited on a, then revoked on b (revocation newer). bob: revoked on a first, then invited on b (invitation newer).
    await a.publish({ type: 'workspace.invited', payload: { workspace_id: 'w', invitee: 'ann@example.com', role: 'admin', invited_by: 'boss@example.com' } })
    await b.publish({ type: 'permission.revoked', payload: { workspace_id: 'w', subject: 'bob@example.com', permission: 'read' } })
    await waitFor('both first events everywhere', () => [a, b].every((n) => query(n.dir, 'SELECT count(*) AS n FROM events')[0].n === 2), 30_000)
    await b.publish({ type: 'permission.revoked', payload: { workspace_id: 'w', subject: 'ann@example.com', permission: 'admin' } })
    await a.publish({ type: 'workspace.invited', payload: { workspace_id: 'w', invitee: 'bob@example.com', role: 'viewer', invited_by: 'boss@example.com' } })
    await waitFor('four events applied everywhere', () => [a, b].every((n) => query(n.dir, "SELECT count(*) AS n FROM events WHERE state = 'done'")[0].n === 4), 30_000)
    const table = (dir: string) => query(dir, 'SELECT workspace_id, subject, permissions FROM workspace_members ORDER BY subject')
    expect(table(a.dir)).toEqual([
      { workspace_id: 'w', subject: 'ann@example.com', permissions: 'member,read,write' },
      { workspace_id: 'w', subject: 'bob@example.com', permissions: 'read' }
    ])
    expect(table(b.dir)).toEqual(table(a.dir))
  })
})
