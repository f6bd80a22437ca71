import { describe, expect, test } from 'bun:test'
import { loadIdentity } from '../src/datadir/load.ts'
import { keptAfterRemovalText } from '../src/model/members.ts'
import { ownEventsRefusedText } from '../src/node/status.ts'
import { query } from './helpers/db.ts'
import { addr, inProcessNode } from './helpers/forge.ts'
import { fakePeerId } from './adversary/helpers.ts'
import { initDir, joiner, tempDir, waitFor } from './helpers/process.ts'
import { recordingLog } from './helpers/log.ts'

/** @returns the seqs of `producer`'s own (not membership) events a data directory holds */
function seqsOf(dir: string, producer: string): number[] {
  return query<{ seq: number }>(dir, "SELECT seq FROM events WHERE producer = ? AND type NOT LIKE 'cairn.%' ORDER BY seq", [producer]).map((r) => r.seq)
}

describe('removals made while cut off', () => {
  test("two owners that removed each other while cut off: the one whose events the others refuse says so (status, one log line, a metric), the others don't", async () => {
    using tmp = tempDir()
    const f = await initDir(tmp.path, 'f')
    const fId = (await loadIdentity(f)).peerId.toString()
    const g = await joiner(tmp.path, 'g', f, fId)
    const h = await joiner(tmp.path, 'h', f, fId)
    // Heads re-signed every second; a member that acknowledges none of g's events past a seq for 3 s
    // (3 × announce-interval) while it acknowledges more of others' refuses them.
    const quick = { 'announce-interval': '1s', 'lag-alert': '1s' }
    const logG = recordingLog()
    let nf = await inProcessNode(f, quick)
    let ng = await inProcessNode(g, { ...quick, bootstrap: [addr(nf)] }, logG.log)
    let nh = await inProcessNode(h, { ...quick, bootstrap: [addr(nf)] })
    const gId = ng.peerId.toString()
    const hId = nh.peerId.toString()
    try {
      await nf.members.add({ peer_id: gId, role: 'owner' })
      await nf.members.add({ peer_id: hId })
      for (let i = 0; i < 2; i++) await ng.publish({ type: 'test.g', payload: { i } })
      await waitFor("g's events on f and h, g an owner everywhere", () => seqsOf(f, gId).length === 2 && seqsOf(h, gId).length === 2 && [nf, ng, nh].every((n) => n.members.isOwner(gId)))

      // Cut off from g, f removes it; h takes the removal.
      await ng.stop()
      expect((await nf.members.remove(gId)).change).toEqual({ op: 'remove', peer_id: gId, last_seq: 2 })
      await waitFor('h to apply the removal of g', () => nh.members.removedAt(gId) != null)
      await nh.stop()
      await nf.stop()

      // Alone, g removes f (it holds no removal of itself) and publishes on.
      ng = await inProcessNode(g, quick, logG.log)
      expect((await ng.members.remove(fId)).change).toMatchObject({ op: 'remove', peer_id: fId })
      for (let i = 2; i < 4; i++) await ng.publish({ type: 'test.g', payload: { i } })

      // All three meet again: f and h refuse g's events after seq 2 (its removal of f among them), g refuses f's later ones.
      nf = await inProcessNode(f, quick)
      nh = await inProcessNode(h, { ...quick, bootstrap: [addr(nf)] })
      await ng.ipfs.libp2p.dial(nf.ipfs.libp2p.getMultiaddrs()[0])
      await ng.ipfs.libp2p.dial(nh.ipfs.libp2p.getMultiaddrs()[0])
      let n = 0
      // f keeps publishing: h takes its events and re-signs its head, acknowledging more of f's and none of g's past seq 2.
      const refused = await waitFor(
        'g to find that h does not take its events after seq 2',
        async () => {
          await nf.publish({ type: 'test.f', payload: { n: n++ } })
          const s = await ng.statusJson()
          return s.own_events_refused_by.length > 0 && s
        },
        60_000,
        200
      )
      expect(refused.own_events_refused_by.map((p) => [p.peer_id, p.after_seq])).toEqual([[hId, 2]])
      expect(refused.verdict).toBe('degraded')
      expect(refused.reasons).toContain(ownEventsRefusedText(refused.own_events_refused_by, gId))
      expect(seqsOf(h, gId)).toEqual([1, 2])
      expect((await ng.publish({ type: 'test.g', payload: { i: 4 } })).seq).toBe(6)
      // f's view: g is removed, so g refusing f is no news; h takes f's events. h's view: the same.
      for (const node of [nf, nh]) {
        const s = await node.statusJson()
        expect({ node: node.peerId.toString(), refused_by: s.own_events_refused_by, reasons: s.reasons.filter((r) => r.includes("have not taken this node's events")) }).toEqual({
          node: node.peerId.toString(),
          refused_by: [],
          reasons: []
        })
      }
      // Once in the log however many heads of h come after, with the reason and who refuses from which seq.
      await waitFor(
        "two more of h's heads on g",
        async () => {
          await nf.publish({ type: 'test.f', payload: { n: n++ } })
          return ng.store.producers.get(hId)!.head_received_at! > Date.parse(refused.own_events_refused_by[0].since) + 5000
        },
        30_000,
        200
      )
      expect(logG.lines.filter((l) => l.fields.reason === 'own_events_refused').map((l) => [l.level, l.fields.peer, l.fields.after_seq])).toEqual([['error', hId, 2]])
      const metrics = await (await fetch(`http://127.0.0.1:${ng.http!.port}/metrics`)).text()
      expect(metrics).toContain('cairn_own_events_refused_peers 1')

      // What the reason tells the operator of g: add back the owner it removed. g then takes f's changes and
      // learns it was removed, which its status says in place of the members' acknowledgements.
      await ng.members.add({ peer_id: fId, role: 'owner' })
      await waitFor("g to take f's changes and apply its own removal", () => ng.members.removedAt(gId) != null, 60_000)
      const settled = await ng.statusJson()
      expect(settled.own_events_refused_by).toEqual([])
      expect(settled.reasons.filter((r) => r.startsWith('this node was removed by') || r.includes("have not taken this node's events"))).toEqual([
        `this node was removed by ${fId}: other nodes refuse its events after seq 2, and it refuses publishes (409 removed_member); an owner adds it again (cairn members add ${gId}) for it to publish`
      ])
    } finally {
      await ng.stop()
      await nh.stop()
      await nf.stop()
    }
  }, 180_000)

  test("a node that took a member's events past the seq its remover had seen says so: that producer's line, a reason, one log line, a metric", async () => {
    using tmp = tempDir()
    const a = await initDir(tmp.path, 'a')
    const aId = (await loadIdentity(a)).peerId.toString()
    const b = await joiner(tmp.path, 'b', a, aId)
    const d = await joiner(tmp.path, 'd', a, aId)
    const quick = { 'announce-interval': '1s' }
    const logB = recordingLog()
    let na = await inProcessNode(a, quick)
    let nb = await inProcessNode(b, { ...quick, bootstrap: [addr(na)] }, logB.log)
    const nd = await inProcessNode(d, { ...quick, bootstrap: [addr(na)] })
    const dId = nd.peerId.toString()
    try {
      await na.members.add({ peer_id: nb.peerId.toString() })
      await na.members.add({ peer_id: dId })
      await waitFor('b and d to be members on b and d', () => [nb, nd].every((n) => n.members.isMember(dId) === true && n.members.isMember(nb.peerId.toString()) === true))
      for (let i = 0; i < 3; i++) await nd.publish({ type: 'test.d', payload: { i } })
      await waitFor("d's events on a and b", () => seqsOf(a, dId).length === 3 && seqsOf(b, dId).length === 3)
      await nb.ipfs.libp2p.dial(nd.ipfs.libp2p.getMultiaddrs()[0])

      // a is away while d writes on and b takes it; then a, alone, removes d having seen up to seq 3.
      await na.stop()
      for (let i = 3; i < 5; i++) await nd.publish({ type: 'test.d', payload: { i } })
      await waitFor("d's later events on b", () => seqsOf(b, dId).length === 5)
      await nb.stop()
      await nd.stop()
      na = await inProcessNode(a, quick)
      expect((await na.members.remove(dId)).change).toEqual({ op: 'remove', peer_id: dId, last_seq: 3 })

      nb = await inProcessNode(b, { ...quick, bootstrap: [addr(na)] }, logB.log)
      await waitFor('b to apply the removal', () => nb.members.removedAt(dId) != null)
      const s = await nb.statusJson()
      const kept = { count: 2, from_seq: 4, to_seq: 5 }
      expect(s.producers.find((p) => p.producer === dId)?.kept_after_removal).toEqual(kept)
      expect(s.verdict).toBe('degraded')
      expect(s.reasons).toContain(keptAfterRemovalText(dId, kept, { last_seq: 3, removed_by: aId }))
      expect(seqsOf(b, dId)).toEqual([1, 2, 3, 4, 5])
      const metrics = await (await fetch(`http://127.0.0.1:${nb.http!.port}/metrics`)).text()
      expect(metrics).toContain(`cairn_kept_after_removal_events{producer="${dId}"} 2`)
      // a holds none past seq 3: nothing to say there.
      expect((await na.statusJson()).producers.find((p) => p.producer === dId)?.kept_after_removal).toBeNull()

      // Logged once, when the removal applied: not again at the changes after it.
      await na.members.add({ peer_id: fakePeerId(1) })
      await waitFor('b to apply the next change', () => nb.members.isMember(fakePeerId(1)) === true)
      expect(logB.lines.filter((l) => l.fields.reason === 'kept_after_removal').map((l) => [l.level, l.fields.producer, l.fields.count, l.fields.from_seq, l.fields.to_seq])).toEqual([
        ['warn', dId, 2, 4, 5]
      ])
    } finally {
      await nb.stop()
      await nd.stop()
      await na.stop()
    }
  }, 180_000)
})
