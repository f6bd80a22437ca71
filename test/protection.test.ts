import { describe, expect, test } from 'bun:test'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { uuidv7 } from 'uuidv7'
import { cairn, NodeProcess, publishMany, tempDir, waitFor } from './helpers/process.ts'
import { eventCount, query } from './helpers/db.ts'
import { inProcessNode, publishForgedTree, type ForgedFile } from './helpers/forge.ts'
import { fileName } from '../src/model/layout.ts'

const envelope = (producer: string, seq: number, payload: unknown = { seq }) => ({
  event_id: uuidv7(),
  type: 'test.forged',
  version: 1,
  producer,
  seq,
  hlc: `${Date.now()}-0000`,
  occurred_at: new Date().toISOString(),
  payload
})
const file = (e: { seq: number; event_id: string }, content: unknown = e): ForgedFile => ({ name: fileName(e.seq, e.event_id), content })

async function rejectedReasons(node: NodeProcess): Promise<Record<string, number>> {
  const text = await (await fetch(`http://${node.http}/metrics`)).text()
  const out: Record<string, number> = {}
  for (const m of text.matchAll(/^cairn_rejected_total\{reason="([a-z_]+)"\} (\d+)/gm)) out[m[1]] = Number(m[2])
  return out
}

describe('protection against members and strangers who lie', () => {
  test('non-members, forged files, bad data and replayed heads are refused while honest events flow', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    const liar = await NodeProcess.init(tmp.path, 'liar', { network: a })
    const stranger = await NodeProcess.init(tmp.path, 'stranger', { network: a })
    for (const n of [a, b]) writeFileSync(join(n.dir, 'config.json'), JSON.stringify({ members: [{ peer_id: a.peerId, name: 'a' }, b.peerId, { peer_id: liar.peerId, name: 'liar' }] }))
    await a.start()
    await b.start(['--bootstrap', a.addrs[0]])
    const m = await inProcessNode(liar.dir, { bootstrap: [a.addrs[0]], members: [a.peerId, b.peerId, liar.peerId] })
    const s = await inProcessNode(stranger.dir, { bootstrap: [a.addrs[0]] })
    try {
      const honest = publishMany(b, 60, (i) => ({ type: 'test.honest', payload: { i } }), 10)

      // A swarm-key holder outside the members list publishes: nobody stores it.
      await s.publish({ type: 'test.stranger', payload: {} })
      await waitFor("the stranger's head to be refused", async () => ((await rejectedReasons(a)).not_member ?? 0) > 0, 30_000)

      // A member writes lies into its own subtree.
      const me = m.peerId.toString()
      const ok1 = envelope(me, 1)
      const ok2 = envelope(me, 2)
      const wrongProducer = envelope(b.peerId, 3)
      const wrongSeq = envelope(me, 4)
      const truncated = envelope(me, 5)
      const badSchema = envelope(me, 6)
      const huge = envelope(me, 7, { blob: 'x'.repeat(1024 * 1024) })
      const deep = envelope(me, 8)
      const ok9 = envelope(me, 9)
      const oldHead = await publishForgedTree(m, 2, [file(ok1), file(ok2)], Date.now() - 1000)
      await waitFor('the first honest events of the liar', () => query(a.dir, 'SELECT 1 FROM events WHERE producer = ?', [me]).length === 2, 30_000)
      await publishForgedTree(m, 9, [
        file(ok1),
        file(ok2),
        file(wrongProducer),
        { name: fileName(4, wrongSeq.event_id), content: { ...wrongSeq, seq: 40 } },
        { name: fileName(5, truncated.event_id), content: JSON.stringify(truncated).slice(0, 40) },
        file(badSchema, { ...badSchema, version: 'one', extra: true }),
        file(huge),
        file(deep, { ...deep, payload: JSON.parse('['.repeat(500) + ']'.repeat(500)) }),
        file(ok9)
      ])
      await waitFor("the liar's honest seq 9", () => query(a.dir, 'SELECT 1 FROM events WHERE event_id = ?', [ok9.event_id]).length === 1, 30_000)
      expect(query(a.dir, 'SELECT seq FROM events WHERE producer = ? ORDER BY seq', [me])).toEqual([{ seq: 1 }, { seq: 2 }, { seq: 9 }])
      expect(query(a.dir, 'SELECT count(*) AS n FROM events WHERE event_id = ?', [wrongProducer.event_id])).toEqual([{ n: 0 }])
      const reasons = await rejectedReasons(a)
      for (const r of ['not_member', 'wrong_producer', 'name_mismatch', 'malformed_json', 'bad_envelope', 'oversized', 'too_deep']) expect(reasons[r]).toBeGreaterThan(0)
      const status = JSON.parse((await cairn(['status', '--data', a.dir, '--json'])).stdout)
      expect(status.quarantine.by_reason).toEqual({ wrong_producer: 1, name_mismatch: 1, malformed_json: 1, bad_envelope: 1, oversized: 1, too_deep: 1 })
      expect((await cairn(['status', '--data', a.dir])).stdout).toContain('quarantine 6')

      // A replayed old head changes nothing.
      const before = query(a.dir, 'SELECT head_seq, head_root, processed_seq FROM producers WHERE producer = ?', [me])
      m.store.db.run('UPDATE producers SET head_message = ? WHERE producer = ?', [oldHead, me])
      await m.announceAll()
      await waitFor('the replayed head to be seen as old', async () => /cairn_heads_received_total\{result="old"\} [1-9]/.test(await (await fetch(`http://${a.http}/metrics`)).text()), 30_000)
      expect(query(a.dir, 'SELECT head_seq, head_root, processed_seq FROM producers WHERE producer = ?', [me])).toEqual(before)

      // Throughout, the honest stream from b arrived complete, and nothing of the stranger's.
      await honest
      await waitFor('60 honest events on a', () => query(a.dir, 'SELECT count(*) AS n FROM events WHERE producer = ?', [b.peerId])[0].n === 60, 60_000)
      expect(query(a.dir, 'SELECT count(*) AS n FROM events WHERE producer = ?', [s.peerId.toString()])).toEqual([{ n: 0 }])
      expect(eventCount(a.dir)).toBe(63)
    } finally {
      await m.stop()
      await s.stop()
    }
  })

  test('a per-type producer policy refuses events of that type from anyone else', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    writeFileSync(join(tmp.path, 'policy.json'), JSON.stringify({ 'permission.revoked': [a.peerId] }))
    await a.start(['--policy', join(tmp.path, 'policy.json')])
    await b.start(['--bootstrap', a.addrs[0]])
    const refused = await b.publish({ type: 'permission.revoked', payload: { workspace_id: 'w', subject: 'x@example.com', permission: 'read' } })
    const allowed = await b.publish({ type: 'test.other', payload: {} })
    await waitFor("b's allowed event on a", () => query(a.dir, 'SELECT 1 FROM events WHERE event_id = ?', [allowed.event_id]).length === 1, 30_000)
    expect(query(a.dir, 'SELECT count(*) AS n FROM events WHERE event_id = ?', [refused.event_id])).toEqual([{ n: 0 }])
    expect((await rejectedReasons(a)).policy).toBe(1)
  })
})
