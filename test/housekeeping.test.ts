import { describe, expect, test } from 'bun:test'
import { statSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { cairn, initDir, NodeProcess, publishMany, tempDir, waitFor } from './helpers/process.ts'
import { inProcessNode } from './helpers/forge.ts'
import { eventCount, query } from './helpers/db.ts'

const fast = ['--retention', '5s', '--housekeeping-interval', '1s']

function blockstoreBytes(dir: string): number {
  return ['blocks.db', 'blocks.db-wal']
    .map((f) => join(dir, f))
    .filter(existsSync)
    .reduce((n, f) => n + statSync(f).size, 0)
}

const publishPadded = async (node: NodeProcess, n: number): Promise<void> => {
  await publishMany(node, n, (i) => ({ type: 'test.kept', payload: { i, pad: 'x'.repeat(2000) } }), 20)
}

describe('housekeeping', () => {
  test("prunes the producer's files once both nodes processed them, keeps every events row, and the blockstore shrinks", async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    await a.start([...fast, '--retention-max', '1h'])
    await b.start([...fast, '--retention-max', '1h', '--bootstrap', a.addrs[0]])
    await publishPadded(a, 100)
    await waitFor('100 events on b', () => eventCount(b.dir) === 100, 60_000)
    const full = blockstoreBytes(a.dir)
    await waitFor('outbox.files to reach 0 on a', async () => (await a.status()).outbox.files === 0, 60_000)
    expect((await a.status()).outbox.oldest_seq).toBeNull()
    // Garbage collection runs in slices after the prune's commit: the space comes back a few seconds later.
    await waitFor('a to reclaim space', async () => (await a.status()).housekeeping.reclaimed_bytes > 100 * 2000, 60_000)
    expect(eventCount(a.dir)).toBe(100)
    expect(eventCount(b.dir)).toBe(100)
    // b drops the pruned files too once a's new head arrives
    await waitFor('b to reclaim space', async () => (await b.status()).housekeeping.reclaimed_bytes > 100 * 2000, 60_000)
    await waitFor("a's blockstore to shrink on disk", () => blockstoreBytes(a.dir) < full / 2, 30_000)
    const events = (await cairn(['events', '--data', b.dir, '--json', '--limit', '1000'])).stdout.trim().split('\n')
    expect(events.length).toBe(100)
  })

  test('a stopped member holds pruning back until --retention-max, then comes back and reports the exact gap', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    await using c = await NodeProcess.init(tmp.path, 'c', { network: a })
    const opts = [...fast, '--retention-max', '20s']
    await a.start(opts)
    await b.start([...opts, '--bootstrap', a.addrs[0]])
    await c.start([...opts, '--bootstrap', a.addrs[0]])
    await publishPadded(a, 10)
    await waitFor('10 events on c', () => eventCount(c.dir) === 10, 60_000)
    // a has learnt c's acks before c goes away
    await waitFor('a to know c', async () => (await a.status()).producers.some((p: any) => p.producer === c.peerId), 30_000)
    await waitFor('the first 10 pruned', async () => (await a.status()).outbox.files === 0, 60_000)
    expect(await c.stop()).toBe(0)
    // when a last heard from c: c no longer holds pruning back once it has been silent for retention-max
    const lastHeard = query<{ t: number }>(a.dir, 'SELECT head_received_at AS t FROM producers WHERE producer = ?', [c.peerId])[0].t
    expect(lastHeard).toBeGreaterThan(Date.now() - 60_000)
    await publishPadded(a, 40)
    await waitFor('50 events on b', () => eventCount(b.dir) === 50, 60_000)
    // past the retention window, c's stale acks still hold the 40 files
    await waitFor(
      'a housekeeping run held back by c',
      async () => {
        const s = await a.status()
        return s.housekeeping.last?.held_back_by?.includes(c.peerId) === true && s.outbox.files === 40
      },
      30_000
    )
    // past the hard maximum the files go
    await waitFor('the 40 files pruned after retention-max', async () => (await a.status()).outbox.files === 0, 60_000)
    expect(Date.now() - lastHeard).toBeGreaterThan(20_000)
    await c.start([...opts, '--bootstrap', a.addrs[0]])
    await waitFor('c to record the gap', async () => (await c.status()).gaps.length > 0, 60_000).catch((err) => {
      console.log(
        JSON.stringify(query(c.dir, 'SELECT producer, head_seq, processed_seq, synced_root, head_root, last_error FROM producers')),
        JSON.stringify(query(c.dir, 'SELECT * FROM gaps')),
        JSON.stringify(query(a.dir, 'SELECT * FROM gaps'))
      )
      throw err
    })
    expect((await c.status()).gaps.map((g: any) => ({ producer: g.producer, from_seq: g.from_seq, to_seq: g.to_seq }))).toEqual([{ producer: a.peerId, from_seq: 11, to_seq: 50 }])
    expect((await c.status()).verdict).toBe('degraded')
    expect((await fetch(`http://${c.http}/readyz`)).status).toBe(200)
    const gaps = await cairn(['gaps', '--data', c.dir])
    expect(gaps.stdout).toContain(`${a.peerId}  seq 11..50`)
    // processing continues after the gap
    const after = await a.publish({ type: 'test.after', payload: {} })
    await waitFor('the next event on c', () => eventCount(c.dir) === 11, 30_000)
    expect(after.seq).toBe(51)
  })
})

describe('the bus root status reports', () => {
  test('is stored when status reports it and survives garbage collection as the current one', async () => {
    using tmp = tempDir()
    const dir = await initDir(tmp.path, 'a')
    const node = await inProcessNode(dir)
    try {
      for (let i = 0; i < 3; i++) await node.publish({ type: 'workspace.invited', payload: { workspace_id: 'w', invitee: `u${i}@example.com`, role: 'member', invited_by: 'admin@example.com' } })
      const reported = CID.parse((await node.statusJson()).bus_root)
      expect(node.blocks.has(reported)).toBe(true)
      await node.housekeeping()
      expect(node.blocks.has(reported)).toBe(true)
      // A commit moves it: housekeeping keeps the current one, and the old one may go.
      await node.publish({ type: 'workspace.invited', payload: { workspace_id: 'w', invitee: 'late@example.com', role: 'member', invited_by: 'admin@example.com' } })
      const next = await node.busRoot()
      node.blocks.delete(next)
      await node.housekeeping()
      expect({ current: node.blocks.has(next), old: node.blocks.has(reported) }).toEqual({ current: true, old: false })
    } finally {
      await node.stop()
    }
  }, 60_000)
})
