import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { uuidv7 } from 'uuidv7'
import { initDataDir } from '../../src/datadir/init.ts'
import { fileName } from '../../src/model/layout.ts'
import { inProcessNode, publishForgedTree, withApiNode } from '../helpers/forge.ts'
import { tempDir, waitFor } from '../helpers/process.ts'

// A lone UTF-16 surrogate (\ud800 to \udfff without its pair) cannot be stored as SQLite TEXT (it becomes
// U+FFFD), and strict JSON readers refuse it: an event file holding one, escaped in its JSON, is refused.
const LONE_HIGH = '\ud800'
const LONE_LOW = '\udc00'
const PAIR = '\ud83d\ude00'

describe('lone surrogates', () => {
  test("a member's event files with a lone surrogate in an envelope field or the payload are quarantined, naming the field; its other events are applied", async () => {
    using tmp = tempDir()
    const [a, b] = [join(tmp.path, 'a'), join(tmp.path, 'b')]
    await initDataDir(a, { newNetwork: true })
    await initDataDir(b, { swarmKeyFile: join(a, 'swarm.key') })
    const victim = await inProcessNode(a)
    const member = await inProcessNode(b, { bootstrap: [victim.ipfs.libp2p.getMultiaddrs()[0].toString()] })
    try {
      const me = member.peerId.toString()
      const envelope = (seq: number, fields: Record<string, unknown> = {}, payload: unknown = { seq }): Record<string, unknown> & { event_id: string; seq: number } => ({
        event_id: uuidv7(),
        type: 'test.forged',
        version: 1,
        producer: me,
        seq,
        hlc: `${Date.now()}-${seq.toString(16).padStart(4, '0')}`,
        occurred_at: new Date().toISOString(),
        payload,
        ...fields
      })
      // Well-formed text beyond U+FFFF, and a payload whose text spells a surrogate's escape without being one, pass.
      const fine = envelope(1, { actor: `mallory ${PAIR}` }, { emoji: PAIR, spelled: '\\ud800' })
      const files = [
        fine,
        envelope(2, { actor: `mallory${LONE_HIGH}` }),
        envelope(3, { correlation_id: `c-${LONE_LOW}` }),
        envelope(4, { causation_id: `${LONE_LOW}${LONE_HIGH}` }),
        envelope(5, {}, { order: { lines: ['ok', `bad ${LONE_HIGH}`] } }),
        envelope(6, {}, { [`key${LONE_LOW}`]: 1 }),
        envelope(7, {}, `${LONE_HIGH}`),
        envelope(8)
      ]
      // publishForgedTree writes each as canonical JSON, which spells a lone surrogate as its escape (\ud800).
      const forged = files.map((e) => ({ name: fileName(e.seq, e.event_id), content: e }))
      expect(JSON.stringify(files[1])).toContain('mallory\\ud800')
      await publishForgedTree(member, 8, forged)
      await waitFor("the member's seq 8", () => victim.store.db.get('SELECT 1 AS x FROM events WHERE producer = ? AND seq = 8', [me]) != null, 30_000)

      expect(victim.store.db.all('SELECT seq FROM events WHERE producer = ? ORDER BY seq', [me])).toEqual([{ seq: 1 }, { seq: 8 }])
      const row = victim.store.db.get<{ actor: string; payload: string }>('SELECT actor, payload FROM events WHERE producer = ? AND seq = 1', [me])
      expect(row?.actor).toBe(`mallory ${PAIR}`)
      expect(JSON.parse(row?.payload ?? 'null')).toEqual({ emoji: PAIR, spelled: '\\ud800' })

      const quarantined = victim.store.db.all<{ path: string; reason: string; detail: string }>('SELECT path, reason, detail FROM quarantine WHERE producer = ? ORDER BY path', [me])
      expect(quarantined.map((q) => [q.path.slice(-54, -42), q.reason])).toEqual([
        ['000000000002', 'bad_envelope'],
        ['000000000003', 'bad_envelope'],
        ['000000000004', 'bad_envelope'],
        ['000000000005', 'bad_payload'],
        ['000000000006', 'bad_payload'],
        ['000000000007', 'bad_payload']
      ])
      const details = quarantined.map((q) => q.detail)
      expect(details[0]).toStartWith('actor: Expected an actor of well-formed Unicode: it holds a lone UTF-16 surrogate')
      expect(details[1]).toStartWith('correlation_id: Expected a correlation id of well-formed Unicode')
      expect(details[2]).toStartWith('causation_id: Expected a causation id of well-formed Unicode')
      expect(details[3]).toStartWith('payload.order.lines.1: holds a lone UTF-16 surrogate')
      expect(details[4]).toStartWith('payload: a member name holds a lone UTF-16 surrogate')
      expect(details[5]).toStartWith('payload: holds a lone UTF-16 surrogate')
      expect((await victim.statusJson()).quarantine.by_reason).toEqual({ bad_envelope: 3, bad_payload: 3 })
    } finally {
      await member.stop()
      await victim.stop()
    }
  })

  test('the publish API refuses a lone surrogate in a payload with a 400 naming where it is, as it does in the envelope fields', async () => {
    await withApiNode({}, async (_node, base, token) => {
      const post = async (body: string): Promise<{ status: number; body: any }> => {
        const res = await fetch(`${base}/v1/events`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body })
        return { status: res.status, body: await res.json() }
      }
      // The escapes are sent as they are: JSON.stringify would spell them the same way.
      const one = await post('{"type":"test.probe","payload":{"a":{"b":["ok","\\ud800"]}}}')
      expect(one.status).toBe(400)
      expect(one.body.error.issues).toEqual([{ path: 'payload.a.b.1', message: expect.stringContaining('holds a lone UTF-16 surrogate'), code: 'lone_surrogate' }])
      expect(one.body.error.message).toContain('payload.a.b.1: holds a lone UTF-16 surrogate')
      const key = await post('{"type":"test.probe","payload":{"\\udfffk":1}}')
      expect(key.status).toBe(400)
      expect(key.body.error.issues[0]).toMatchObject({ path: 'payload', code: 'lone_surrogate', message: expect.stringContaining('a member name holds') })
      const batch = await post('[{"type":"test.probe","payload":{}},{"type":"test.probe","payload":"\\udc00"}]')
      expect(batch.status).toBe(400)
      expect(batch.body.error.issues[0]).toMatchObject({ path: '[1].payload', code: 'lone_surrogate' })
      const actor = await post('{"type":"test.probe","payload":{},"actor":"\\ud800"}')
      expect(actor.status).toBe(400)
      expect(actor.body.error.issues[0].path).toBe('actor')
      // A pair, and text that only spells an escape, are published and served back as they were sent.
      const ok = await post('{"type":"test.probe","payload":{"e":"\\ud83d\\ude00","spelled":"\\\\ud800"},"actor":"\\ud83d\\ude00"}')
      expect(ok.status).toBe(201)
      const got = await (await fetch(`${base}/v1/events`, { headers: { authorization: `Bearer ${token}` } })).json()
      expect(got.events.map((e: { payload: unknown; actor?: string }) => [e.payload, e.actor])).toEqual([[{ e: PAIR, spelled: '\\ud800' }, PAIR]])
    })
  })
})
