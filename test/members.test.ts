import { describe, expect, test } from 'bun:test'
import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { query } from './helpers/db.ts'
import { cairn, NodeProcess, tempDir, waitFor } from './helpers/process.ts'

/** @returns a node's `cairn_rejected_total` by reason, and `cairn_rejected_by_producer_total` by producer and reason */
async function rejections(node: NodeProcess): Promise<{ byReason: Record<string, number>; byProducer: Record<string, number> }> {
  const text = await (await fetch(`http://${node.http}/metrics`)).text()
  const byReason: Record<string, number> = {}
  const byProducer: Record<string, number> = {}
  for (const m of text.matchAll(/^cairn_rejected_total\{reason="([a-z_]+)"\} (\d+)/gm)) byReason[m[1]] = Number(m[2])
  for (const m of text.matchAll(/^cairn_rejected_by_producer_total\{([^}]*)\} (\d+)/gm)) {
    const labels = Object.fromEntries([...m[1].matchAll(/([a-z_]+)="([^"]*)"/g)].map((l) => [l[1], l[2]]))
    byProducer[`${labels.producer} ${labels.reason}`] = Number(m[2])
  }
  return { byReason, byProducer }
}

/** @returns the seqs of `producer`'s events a node holds, ascending */
function seqsOf(node: NodeProcess, producer: string): number[] {
  return query<{ seq: number }>(node.dir, 'SELECT seq FROM events WHERE producer = ? AND type NOT LIKE ? ORDER BY seq', [producer, 'cairn.%']).map((r) => r.seq)
}

/** @returns how many membership changes a node holds */
function changes(node: NodeProcess): number {
  return query<{ n: number }>(node.dir, "SELECT count(*) AS n FROM events WHERE type = 'cairn.members'")[0].n
}

interface Listed {
  source: string
  members: Array<{ peer_id: string; role: string; name: string | null; added_by: string | null; connected: boolean }>
  removed: Array<{ peer_id: string; last_seq: number }>
}

/** @returns `cairn members list --json` of a running node */
async function listed(node: NodeProcess): Promise<Listed> {
  const r = await cairn(['members', 'list', '--json', '--data', node.dir])
  if (r.code !== 0) throw new Error(r.stderr)
  return JSON.parse(r.stdout) as Listed
}

/** Starts the nodes, each bootstrapping to all started before it, and waits until every one sees every other. */
async function startMesh(nodes: NodeProcess[]): Promise<void> {
  for (const [i, n] of nodes.entries()) await n.start(nodes.slice(0, i).flatMap((p) => ['--bootstrap', p.addrs[0]]))
  await waitFor('every node to see every other', async () => {
    for (const n of nodes) if ((await n.status()).peers.length < nodes.length - 1) return false
    return true
  })
}

describe('membership as signed changes', () => {
  test('four nodes, none restarted: A adds B and C, D is refused from the start, A removes C while B is offline, and C publishes no more', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    const owners = [a.peerId]
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a, owners })
    await using c = await NodeProcess.init(tmp.path, 'c', { network: a, owners })
    await using d = await NodeProcess.init(tmp.path, 'd', { network: a, owners })
    const all = [a, b, c, d]
    await startMesh(all)

    const addB = await cairn(['members', 'add', b.peerId, '--name', 'b', '--data', a.dir])
    expect(addB.code).toBe(0)
    expect(JSON.parse(addB.stdout).change).toEqual({ op: 'add', peer_id: b.peerId, role: 'member', name: 'b' })
    expect((await cairn(['members', 'add', c.peerId, '--name', 'c', '--data', a.dir])).code).toBe(0)
    await waitFor('every node to have both changes applied', async () => {
      for (const n of all) {
        const l = await listed(n)
        if (l.source !== 'changes' || !l.members.some((m) => m.peer_id === c.peerId)) return false
      }
      return true
    })
    const onA = await listed(a)
    expect(onA.members.map((m) => [m.peer_id, m.role, m.name, m.added_by, m.connected])).toEqual([
      [a.peerId, 'owner', null, null, false],
      ...[
        [b.peerId, 'member', 'b', a.peerId, true],
        [c.peerId, 'member', 'c', a.peerId, true]
      ].sort((x, y) => String(x[0]).localeCompare(String(y[0])))
    ])
    const statusText = await cairn(['status', '--data', b.dir])
    expect(statusText.stdout).toContain('members   ')
    expect(statusText.stdout).toContain('b (member, self)')

    // D was never added: its events are refused by every member from its first head on.
    const before = await Promise.all([a, b, c].map(rejections))
    await d.publish({ type: 'test.d', payload: { n: 1 } })
    for (const [i, n] of [a, b, c].entries()) {
      await waitFor(`${n.dir} to refuse d`, async () => ((await rejections(n)).byReason.not_member ?? 0) > (before[i].byReason.not_member ?? 0))
    }

    // C's events reach everyone, D included (D is no member, but reads).
    for (let i = 0; i < 3; i++) await c.publish({ type: 'test.c', payload: { n: i } })
    for (const n of [a, b, d]) await waitFor(`c's events on ${n.dir}`, () => seqsOf(n, c.peerId).length === 3)

    // B goes offline (stopped, not restarted); A removes C meanwhile. C, holding its removal, refuses to
    // publish on (the others' refusal of a removed member that writes on is in membersOrder.test.ts).
    b.proc!.kill('SIGSTOP')
    const removal = await cairn(['members', 'remove', c.peerId, '--data', a.dir])
    expect(removal.code).toBe(0)
    expect(JSON.parse(removal.stdout).change).toEqual({ op: 'remove', peer_id: c.peerId, last_seq: 3 })
    await waitFor('c and d to apply the removal', async () => changes(c) === 3 && changes(d) === 3 && (await c.status()).plugins.backlog === 0)
    const later = await cairn(['publish', '--type', 'test.c', '--payload', '{"n":3}', '--data', c.dir])
    expect({ code: later.code, http: later.stderr.includes('HTTP 409'), removedBy: later.stderr.includes(`this node (${c.peerId}) was removed by ${a.peerId}`) }).toEqual({
      code: 1,
      http: true,
      removedBy: true
    })

    // B comes back and applies the removal.
    b.proc!.kill('SIGCONT')
    await waitFor('b to apply the removal', () => changes(b) === 3, 60_000)
    for (const n of [a, b, c, d]) expect({ node: n.dir, seqs: seqsOf(n, c.peerId) }).toEqual({ node: n.dir, seqs: [1, 2, 3] })
    for (const n of [a, b, c]) expect(seqsOf(n, d.peerId)).toEqual([])
    for (const n of all) {
      const l = await listed(n)
      expect({ members: l.members.map((m) => m.peer_id).sort(), removed: l.removed.map((r) => [r.peer_id, r.last_seq]) }).toEqual({ members: [a.peerId, b.peerId].sort(), removed: [[c.peerId, 3]] })
    }
    for (const n of all) expect(await n.stop()).toBe(0)
    // A stopped node's status reads the membership from its database.
    const stopped = JSON.parse((await cairn(['status', '--json', '--data', d.dir])).stdout)
    expect({
      running: stopped.running,
      source: stopped.members.source,
      members: stopped.members.members.map((m: { peer_id: string }) => m.peer_id).sort(),
      removed: stopped.members.removed.length
    }).toEqual({
      running: false,
      source: 'changes',
      members: [a.peerId, b.peerId].sort(),
      removed: 1
    })
  }, 240_000)

  test("a member that is no owner cannot change the membership, nor publish a change itself; two owners' conflicting changes at the same time end the same on every node", async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    const owners = [a.peerId]
    await using o = await NodeProcess.init(tmp.path, 'o', { network: a, owners })
    await using m = await NodeProcess.init(tmp.path, 'm', { network: a, owners })
    const all = [a, o, m]
    await startMesh(all)
    const x = (await NodeProcess.init(tmp.path, 'x', { network: a })).peerId
    for (const args of [
      [o.peerId, '--role', 'owner'],
      [m.peerId, '--name', 'm'],
      [x, '--name', 'x']
    ]) {
      const r = await cairn(['members', 'add', ...args, '--data', a.dir])
      expect(r.stderr).toBe('')
    }
    await waitFor('every node to hold the three changes', () => all.every((n) => changes(n) === 3))

    const refused = await cairn(['members', 'remove', x, '--data', m.dir])
    expect({ code: refused.code, stderr: refused.stderr }).toEqual({
      code: 1,
      stderr: `cairn members: Cannot change the membership: this node (${m.peerId}) is not an owner; ask an owner (cairn members list shows them) (HTTP 403)\n`
    })
    const headers = { authorization: `Bearer ${m.token}`, 'content-type': 'application/json' }
    const viaHttp = await fetch(`http://${m.http}/v1/members`, { method: 'POST', headers, body: JSON.stringify({ peer_id: x, role: 'owner' }) })
    expect(viaHttp.status).toBe(403)
    const raw = await fetch(`http://${m.http}/v1/events`, { method: 'POST', headers, body: JSON.stringify({ type: 'cairn.members', payload: { op: 'remove', peer_id: x, last_seq: 0 } }) })
    expect({ status: raw.status, body: await raw.json() }).toEqual({
      status: 400,
      body: {
        error: {
          code: 'invalid_request',
          message: 'Cannot publish cairn.members: the cairn. namespace is reserved',
          issues: [{ path: 'type', message: 'cairn.* is reserved for cairn itself (membership changes are made with cairn members or /v1/members)', code: 'reserved_type' }]
        }
      }
    })
    const bad = await cairn(['members', 'add', 'not-a-peer', '--data', a.dir])
    expect({ code: bad.code, stderr: bad.stderr }).toEqual({ code: 1, stderr: 'cairn members: Cannot add a member: peer_id: Expected a libp2p peer id (HTTP 400)\n' })

    // The two owners at the same time: a makes x an owner, o removes it.
    const [promote, remove] = await Promise.all([cairn(['members', 'add', x, '--role', 'owner', '--name', 'x2', '--data', a.dir]), cairn(['members', 'remove', x, '--data', o.dir])])
    expect([promote.code, remove.code, promote.stderr, remove.stderr]).toEqual([0, 0, '', ''])
    await waitFor('every node to hold both conflicting changes', () => all.every((n) => changes(n) === 5))
    const lists = await Promise.all(
      all.map(async (n) => ({ ...(await listed(n)), self_is_owner: undefined, members: (await listed(n)).members.map((e) => ({ ...e, connected: undefined, self: undefined })) }))
    )
    expect(lists[1]).toEqual(lists[0])
    expect(lists[2]).toEqual(lists[0])
    for (const n of all) expect(await n.stop()).toBe(0)
  }, 240_000)

  test('a removed member no longer holds pruning back; membership changes are never pruned, so a node that joins later learns them', async () => {
    using tmp = tempDir()
    const fast = ['--retention', '3s', '--housekeeping-interval', '1s', '--retention-max', '1h']
    await using a = await NodeProcess.init(tmp.path, 'a')
    const owners = [a.peerId]
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a, owners })
    await using c = await NodeProcess.init(tmp.path, 'c', { network: a, owners })
    for (const [i, n] of [a, b, c].entries()) await n.start([...fast, ...[a, b].slice(0, i).flatMap((p) => ['--bootstrap', p.addrs[0]])])
    for (const p of [b, c]) expect((await cairn(['members', 'add', p.peerId, '--data', a.dir])).code).toBe(0)
    await waitFor("a to know c's acks of both changes", () =>
      query<{ acks: string }>(a.dir, 'SELECT acks FROM producers WHERE producer = ?', [c.peerId]).some((r) => JSON.parse(r.acks)[a.peerId] >= 2)
    )
    c.proc!.kill('SIGSTOP')
    for (let i = 0; i < 5; i++) await a.publish({ type: 'test.a', payload: { i } })
    await waitFor('a housekeeping run held back by c', async () => {
      const s = await a.status()
      return s.housekeeping.last?.held_back_by?.includes(c.peerId) === true && s.outbox.files >= 5
    })
    expect((await cairn(['members', 'remove', c.peerId, '--data', a.dir])).code).toBe(0)
    await waitFor('a to prune every file but its three changes once b has them', async () => {
      const s = await a.status()
      return s.outbox.files === 3 && s.housekeeping.last?.held_back_by?.length === 0
    })
    expect(query(a.dir, 'SELECT seq FROM outbox WHERE pruned_at IS NULL ORDER BY seq')).toEqual(
      query(a.dir, "SELECT seq FROM events WHERE producer = ? AND type = 'cairn.members' ORDER BY seq", [a.peerId])
    )
    c.proc!.kill('SIGCONT')
    await using late = await NodeProcess.init(tmp.path, 'late', { network: a, owners })
    await late.start(['--bootstrap', a.addrs[0]])
    await waitFor('the late node to learn every change', async () => {
      const l = await listed(late)
      return l.source === 'changes' && l.removed.some((r) => r.peer_id === c.peerId)
    })
    expect((await listed(late)).members.map((m) => m.peer_id).sort()).toEqual([a.peerId, b.peerId].sort())
    for (const n of [late, a, b, c]) expect(await n.stop()).toBe(0)
  }, 240_000)
})

describe('cairn init and the owners', () => {
  test('--new-network records this node as the owner, --owner records the founders a joining node is given, once', async () => {
    using tmp = tempDir()
    const a = await NodeProcess.init(tmp.path, 'a')
    const owners = (dir: string): unknown => query<{ value: string }>(dir, "SELECT value FROM meta WHERE key = 'owners'").map((r) => JSON.parse(r.value))
    expect(owners(a.dir)).toEqual([[a.peerId]])
    const bad = await cairn(['init', '--data', `${tmp.path}/x`, '--new-network', '--owner', 'alice'])
    expect({ code: bad.code, stderr: bad.stderr.split(':').slice(0, 2).join(':') }).toEqual({ code: 1, stderr: 'cairn init: Invalid --owner alice' })
    const b = await NodeProcess.init(tmp.path, 'b', { network: a })
    expect(owners(b.dir)).toEqual([])
    const recorded = await cairn(['init', '--data', b.dir, '--owner', a.peerId])
    expect({ code: recorded.code, stdout: recorded.stdout, stderr: recorded.stderr }).toEqual({
      code: 0,
      stdout: `${b.peerId}\n`,
      stderr: `${b.dir} is already a cairn data directory; recorded the owners ${a.peerId} (restart the node to apply)\n`
    })
    expect(owners(b.dir)).toEqual([[a.peerId]])
    const again = await cairn(['init', '--data', b.dir, '--owner', b.peerId])
    expect({ code: again.code, stderr: again.stderr }).toEqual({
      code: 1,
      stderr: `cairn init: ${b.dir} already records the owners ${a.peerId}; owners change only through owners' signed changes (cairn members add PEER_ID --role owner)\n`
    })
    const usage = await cairn(['members', 'promote', a.peerId, '--data', a.dir])
    expect({ code: usage.code, stderr: usage.stderr }).toEqual({
      code: 1,
      stderr:
        'cairn members: cairn members needs add, remove, list or join-file (not "promote"); usage: cairn members add PEER_ID [--name NAME] [--role member|owner]  |  remove PEER_ID  |  list [--json]  |  join-file FILE   [--data DIR]\n'
    })
  })
})

describe('the join file', () => {
  test('carries the swarm key, the founders and the peers: a node joined with it connects and is added live', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await a.start()
    const file = `${tmp.path}/join.json`
    const written = await cairn(['members', 'join-file', file, '--data', a.dir])
    expect(written.code).toBe(0)
    expect(statSync(file).mode & 0o777).toBe(0o600)
    expect(JSON.parse(written.stdout)).toEqual({ file, owners: [a.peerId], bootstrap: a.addrs })
    expect((await cairn(['members', 'join-file', file, '--data', a.dir])).stderr).toStartWith(`cairn members: Cannot write ${file}: EEXIST`)
    await using e = new NodeProcess(`${tmp.path}/e`)
    const init = await cairn(['init', '--data', e.dir, '--join', file])
    expect(init.code).toBe(0)
    e.peerId = init.stdout.trim()
    expect(JSON.parse(readFileSync(`${e.dir}/config.json`, 'utf8'))).toEqual({ bootstrap: a.addrs })
    await e.start()
    await waitFor('e to connect to a from the join file', async () => (await e.status()).peers.includes(a.peerId))
    expect((await cairn(['members', 'add', e.peerId, '--name', 'e', '--data', a.dir])).code).toBe(0)
    await waitFor('e to apply its own addition', async () => (await listed(e)).members.some((m) => m.peer_id === e.peerId && m.name === 'e'))
    const r = await e.publish({ type: 'test.e', payload: {} })
    await waitFor("e's event on a", () => seqsOf(a, e.peerId).includes(r.seq))
    writeFileSync(`${tmp.path}/bad.json`, JSON.stringify({ cairn_join: 1, swarm_key: 'nope', owners: [] }))
    const bad = await cairn(['init', '--data', `${tmp.path}/f`, '--join', `${tmp.path}/bad.json`])
    expect({ code: bad.code, stderr: bad.stderr }).toEqual({ code: 1, stderr: `cairn init: Cannot read --join ${tmp.path}/bad.json: owners: Expected at least one owner\n` })
    for (const n of [e, a]) expect(await n.stop()).toBe(0)
  }, 120_000)
})

describe('cairn rekey', () => {
  test('rotates the swarm key of stopped nodes, keeping the old key and every event; a running node is refused', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    await a.start()
    const busy = await cairn(['rekey', '--data', a.dir, '--new'])
    expect({ code: busy.code, stderr: busy.stderr }).toEqual({
      code: 1,
      stderr: `cairn rekey: Cannot run: a node (pid ${a.proc!.pid}) is already running on ${a.dir}; stop it first, or use another --data directory\n`
    })
    await a.publish({ type: 'test.a', payload: {} })
    expect(await a.stop()).toBe(0)
    const oldKey = readFileSync(`${a.dir}/swarm.key`, 'utf8')
    const first = await cairn(['rekey', '--data', a.dir, '--new'])
    expect(first.code).toBe(0)
    const { network_before, network_after } = JSON.parse(first.stdout)
    expect(network_before).not.toBe(network_after)
    expect(readFileSync(`${a.dir}/swarm.key.previous`, 'utf8')).toBe(oldKey)
    expect(statSync(`${a.dir}/swarm.key`).mode & 0o777).toBe(0o600)
    const second = await cairn(['rekey', '--data', b.dir, '--swarm-key', `${a.dir}/swarm.key`])
    expect(JSON.parse(second.stdout)).toEqual({ network_before, network_after })
    const same = await cairn(['rekey', '--data', b.dir, '--swarm-key', `${a.dir}/swarm.key`])
    expect({ code: same.code, stderr: same.stderr }).toEqual({ code: 1, stderr: `cairn rekey: ${a.dir}/swarm.key is the key ${b.dir} already has; nothing changed\n` })
    await a.start()
    await b.start(['--bootstrap', a.addrs[0]])
    await waitFor("a's event on b, over the new key", () => seqsOf(b, a.peerId).length === 1)
    for (const n of [b, a]) expect(await n.stop()).toBe(0)
  }, 120_000)
})
