import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { initDataDir } from '../src/datadir/init.ts'
import { inProcessNode } from './helpers/forge.ts'
import { cairn, initDir, tempDir } from './helpers/process.ts'
import { fakePeerId } from './adversary/helpers.ts'

describe('/v1/members', () => {
  test('lists, adds (201) and removes members on an owner, and names every bad request', async () => {
    using tmp = tempDir()
    const node = await inProcessNode(await initDir(tmp.path, 'a'))
    try {
      const self = node.peerId.toString()
      const base = `http://127.0.0.1:${node.http!.port}`
      const call = async (method: string, path: string, body?: unknown, token = node.config.data): Promise<{ status: number; body: any }> => {
        const res = await fetch(`${base}${path}`, {
          method,
          headers: { authorization: `Bearer ${token === node.config.data ? (await Bun.file(`${node.config.data}/api.token`).text()).trim() : token}`, 'content-type': 'application/json' },
          body: body === undefined ? undefined : JSON.stringify(body)
        })
        return { status: res.status, body: await res.json() }
      }
      const x = fakePeerId(1)
      expect(await call('GET', '/v1/members')).toEqual({
        status: 200,
        body: {
          source: 'open',
          self_is_owner: true,
          members: [{ peer_id: self, name: null, role: 'owner', added_by: null, added_at: null, connected: false, self: true }],
          removed: [],
          refused: [],
          refused_total: 0
        }
      })
      expect((await call('GET', '/v1/members', undefined, 'wrong')).status).toBe(401)
      expect(await call('POST', '/v1/members', { peer_id: x, boss: true })).toEqual({
        status: 400,
        body: {
          error: {
            code: 'invalid_request',
            message: 'Cannot add a member: boss: is not a field of a membership change (only peer_id, role and name)',
            issues: [{ path: 'boss', message: 'is not a field of a membership change (only peer_id, role and name)', code: 'unknown_field' }]
          }
        }
      })
      // A missing peer_id is said to be required, apart from the unknown field.
      expect(await call('POST', '/v1/members', { foo: 1 })).toEqual({
        status: 400,
        body: {
          error: {
            code: 'invalid_request',
            message: 'Cannot add a member: peer_id: is required; foo: is not a field of a membership change (only peer_id, role and name)',
            issues: [
              { path: 'peer_id', message: 'is required', code: 'required' },
              { path: 'foo', message: 'is not a field of a membership change (only peer_id, role and name)', code: 'unknown_field' }
            ]
          }
        }
      })
      expect(await call('POST', '/v1/members', { peer_id: x, role: 'boss' })).toEqual({
        status: 400,
        body: {
          error: {
            code: 'invalid_request',
            message: 'Cannot add a member: role: Expected role member or owner',
            issues: [{ path: 'role', message: 'Expected role member or owner', code: 'invalid_type' }]
          }
        }
      })
      const added = await call('POST', '/v1/members', { peer_id: x, name: 'x' })
      expect({ status: added.status, change: added.body.change, seq: added.body.seq }).toEqual({ status: 201, change: { op: 'add', peer_id: x, role: 'member', name: 'x' }, seq: 1 })
      const listed = await call('GET', '/v1/members')
      expect(listed.body.source).toBe('changes')
      expect(listed.body.members.map((m: { peer_id: string; added_by: string | null }) => [m.peer_id, m.added_by])).toEqual([
        [self, null],
        [x, self]
      ])
      expect(await call('DELETE', `/v1/members/${fakePeerId(2)}`)).toEqual({
        status: 400,
        body: {
          error: {
            code: 'invalid_request',
            message: `Cannot remove ${fakePeerId(2)}: it is not a member (see cairn members list)`,
            issues: [{ path: 'peer_id', message: `${fakePeerId(2)} is not a member`, code: 'not_a_member' }]
          }
        }
      })
      expect(await call('DELETE', `/v1/members/${self}`)).toEqual({
        status: 400,
        body: {
          error: {
            code: 'invalid_request',
            message: `Cannot remove ${self}: it is the last owner; add another owner first`,
            issues: [{ path: 'peer_id', message: 'is the last owner', code: 'last_owner' }]
          }
        }
      })
      const removed = await call('DELETE', `/v1/members/${x}`)
      expect({ status: removed.status, change: removed.body.change }).toEqual({ status: 200, change: { op: 'remove', peer_id: x, last_seq: 0 } })
      expect((await node.statusJson()).members.removed.map((r) => [r.peer_id, r.name, r.last_seq, r.removed_by])).toEqual([[x, 'x', 0, self]])
    } finally {
      await node.stop()
    }
  }, 60_000)

  test('a demotion of another owner is two changes in one commit, which --max-batch 1 does not refuse', async () => {
    using tmp = tempDir()
    // max-batch bounds what a backend publishes in one request; a demotion is cairn's own pair of changes.
    const dir = join(tmp.path, 'a')
    await initDataDir(dir, { newNetwork: true })
    const node = await inProcessNode(dir, { 'max-batch': 1 })
    try {
      const m = fakePeerId(5)
      await node.members.add({ peer_id: m, role: 'owner' })
      const demoted = await node.members.add({ peer_id: m, role: 'member' })
      expect(demoted.change).toEqual({ op: 'add', peer_id: m, role: 'member' })
      expect([node.members.isOwner(m), node.members.isMember(m)]).toEqual([false, true])
      const written = node.store.db.all<{ seq: number; payload: string }>("SELECT seq, payload FROM events WHERE type = 'cairn.members' ORDER BY seq")
      expect(written.map((r) => [r.seq, JSON.parse(r.payload)])).toEqual([
        [1, { op: 'add', peer_id: m, role: 'owner' }],
        [2, { op: 'remove', peer_id: m, last_seq: 0 }],
        [3, { op: 'add', peer_id: m, role: 'member' }]
      ])
      // A backend's batch is still held to it.
      const batch = await fetch(`http://127.0.0.1:${node.http!.port}/v1/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${(await Bun.file(`${node.config.data}/api.token`).text()).trim()}`, 'content-type': 'application/json' },
        body: JSON.stringify([
          { type: 'test.a', payload: {} },
          { type: 'test.b', payload: {} }
        ])
      })
      expect(batch.status).toBe(413)
    } finally {
      await node.stop()
    }
  }, 60_000)

  test('with the static members setting and no change yet, the list is the setting and says so', async () => {
    using tmp = tempDir()
    const x = fakePeerId(3)
    const dir = await initDir(tmp.path, 'a')
    const node = await inProcessNode(dir, { members: [{ peer_id: x, name: 'x' }] })
    try {
      // cairn members list says where each member comes from: the setting, not a founder
      const listed = await cairn(['members', 'list', '--data', dir])
      expect(listed.stdout.split('\n').find((l) => l.includes(x))).toMatch(/member\s+x\s+setting /)
      const doc = node.members.document()
      expect({ source: doc.source, members: doc.members.map((m) => [m.peer_id, m.role, m.name]) }).toEqual({
        source: 'setting',
        members: [
          [node.peerId.toString(), 'owner', null],
          [x, 'member', 'x']
        ]
      })
      expect([node.members.isMember(x), node.members.isMember(fakePeerId(4))]).toEqual([true, false])
      // the list shows x as a member: removing it must say why a change cannot, not that it is no member
      await expect(node.members.remove(x)).rejects.toThrow(`Cannot remove ${x}: it is a member by the static members setting`)
    } finally {
      await node.stop()
    }
  }, 60_000)
})
