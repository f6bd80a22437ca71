import { describe, expect, test } from 'bun:test'
import { cairn, NodeProcess, tempDir, waitFor } from './helpers/process.ts'
import { eventCount, query } from './helpers/db.ts'

// Files older than 3 s may go; housekeeping runs every second; a silent member holds plain files back for an hour.
const opts = ['--retention', '3s', '--housekeeping-interval', '1s', '--retention-max', '1h']

const invite = (workspace: string, invitee: string, role: string) => ({ type: 'workspace.invited', payload: { workspace_id: workspace, invitee, role, invited_by: 'root@example.com' } })
const revoke = (workspace: string, subject: string, permission: string) => ({ type: 'permission.revoked', payload: { workspace_id: workspace, subject, permission } })
const other = (n: number) => ({ type: 'test.unhandled', payload: { n } })

/** The plugin table as text: equal text is the same table, byte for byte. */
const accessTable = (dir: string): string => JSON.stringify(query(dir, 'SELECT * FROM workspace_access ORDER BY workspace_id, subject, permission'))

/** @returns whether `node` has processed every producer up to the seq in `heads` */
const caughtUp = async (node: NodeProcess, heads: Record<string, number>): Promise<boolean> => {
  const s = await node.status()
  const processed = Object.fromEntries(s.producers.map((p: any) => [p.producer, p.processed_seq]))
  return Object.entries(heads).every(([p, seq]) => processed[p] === seq) && s.plugins.backlog === 0
}

describe('late joiners and long absences', () => {
  test('after compaction, a fresh node and one stopped past the retention reach the same workspace_access table as the producers, byte for byte, and are healthy', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    await using c = await NodeProcess.init(tmp.path, 'c', { network: a })
    await using d = await NodeProcess.init(tmp.path, 'd', { network: a })
    await a.start(opts)
    await b.start([...opts, '--bootstrap', a.addrs[0]])
    await d.start([...opts, '--bootstrap', a.addrs[0]])

    // A invites ann (member) and bob (viewer), and publishes an event no plugin handles.
    await a.publish(invite('w1', 'ann@example.com', 'member'))
    await a.publish(invite('w1', 'bob@example.com', 'viewer'))
    await a.publish(other(1))
    await waitFor('b and d to have a 1..3', () => eventCount(b.dir) === 3 && eventCount(d.dir) === 3, 60_000)
    // d's acks for a reach a; then d goes away for longer than the retention
    await waitFor('a to know that d processed a 1..3', () => {
      const row = query<{ acks: string }>(a.dir, 'SELECT acks FROM producers WHERE producer = ?', [d.peerId])[0]
      return row != null && (JSON.parse(row.acks)[a.peerId] ?? 0) >= 3
    })
    expect(await d.stop()).toBe(0)

    // B supersedes parts of a's invitation (across producers), revokes bob entirely, and invites dan.
    await b.publish(revoke('w1', 'ann@example.com', 'write'))
    await b.publish(invite('w1', 'ann@example.com', 'viewer'))
    await b.publish(other(2))
    await b.publish(revoke('w1', 'bob@example.com', 'read'))
    await b.publish(invite('w1', 'dan@example.com', 'member'))
    await waitFor('a to have b 1..5', () => eventCount(a.dir) === 8, 60_000)
    // A makes ann an admin (superseding a 1 and b 1, 2), revokes cy elsewhere, and re-invites bob (superseding b 4).
    await a.publish(invite('w1', 'ann@example.com', 'admin'))
    await a.publish(revoke('w2', 'cy@example.com', 'owner'))
    await a.publish(invite('w1', 'bob@example.com', 'viewer'))
    await waitFor('b to have a 4..6', () => eventCount(b.dir) === 11, 60_000)

    // Compaction: a keeps 4, 5, 6 (1 and 2 superseded, 3 plain and acknowledged by everyone);
    // b keeps 3 (plain: d has not acknowledged it) and 5 (1, 2 and 4 superseded).
    await waitFor(
      'a and b to compact their outboxes',
      async () => {
        const [sa, sb] = [await a.status(), await b.status()]
        return sa.outbox.files === 3 && sb.outbox.files === 2
      },
      60_000
    )
    expect((await a.status()).outbox).toMatchObject({ files: 3, oldest_seq: 4, compacted_files: 2 })
    expect((await b.status()).outbox).toMatchObject({ files: 2, oldest_seq: 3, compacted_files: 3 })
    const expected = accessTable(a.dir)
    expect(accessTable(b.dir)).toBe(expected)
    expect(
      JSON.parse(expected)
        .filter((r: any) => r.granted === 1)
        .map((r: any) => `${r.workspace_id} ${r.subject} ${r.permission}`)
    ).toEqual([
      'w1 ann@example.com admin',
      'w1 ann@example.com member',
      'w1 ann@example.com read',
      'w1 ann@example.com write',
      'w1 bob@example.com read',
      'w1 dan@example.com member',
      'w1 dan@example.com read',
      'w1 dan@example.com write'
    ])

    // A fresh node joins the running network.
    await c.start([...opts, '--bootstrap', a.addrs[0]])
    await waitFor('c to catch up with a and b', () => caughtUp(c, { [a.peerId]: 6, [b.peerId]: 5 }), 60_000)
    expect(accessTable(c.dir)).toBe(expected)
    const sc = await c.status()
    expect({ verdict: sc.verdict, reasons: sc.reasons, gaps: sc.gaps }).toEqual({ verdict: 'healthy', reasons: [], gaps: [] })
    const history = Object.fromEntries(sc.history.map((h: any) => [h.producer, h.history_from_seq]))
    // before these seqs, c holds only what compaction kept (b 3 among them)
    expect(history).toEqual({ [a.peerId]: 4, [b.peerId]: 5 })
    expect((await cairn(['status', '--data', c.dir])).stdout).toContain('history from seq 4')
    expect((await cairn(['gaps', '--data', c.dir])).stdout).toContain(`${a.peerId}  seq 1..3  (3 events`)

    // The stopped node comes back after more than the retention: b 1, 2 and 4 are gone, compacted.
    await d.start([...opts, '--bootstrap', a.addrs[0]])
    await waitFor('d to catch up with a and b', () => caughtUp(d, { [a.peerId]: 6, [b.peerId]: 5 }), 60_000)
    expect(accessTable(d.dir)).toBe(expected)
    const sd = await d.status()
    expect({ verdict: sd.verdict, reasons: sd.reasons, gaps: sd.gaps }).toEqual({ verdict: 'healthy', reasons: [], gaps: [] })
    expect(sd.history).toEqual([{ producer: b.peerId, history_from_seq: 1, compacted_seqs: 3 }])
    const gaps = JSON.parse((await cairn(['gaps', '--data', d.dir, '--json'])).stdout)
    expect(gaps.map((g: any) => [g.from_seq, g.to_seq, g.kind])).toEqual([
      [1, 2, 'compacted'],
      [4, 4, 'compacted']
    ])
  }, 240_000)
})
