import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { loadIdentity } from '../src/datadir/load.ts'
import { query } from './helpers/db.ts'
import type { PublishResult } from '../src/model/publishRequest.ts'
import type { CairnNode } from '../src/node/node.ts'
import { inProcessNode, publishThoughRemoved } from './helpers/forge.ts'
import { cairn, initDir, tempDir, waitFor } from './helpers/process.ts'

/** @returns the seqs of `producer`'s own (not membership) events a data directory holds */
function seqsOf(dir: string, producer: string): number[] {
  return query<{ seq: number }>(dir, "SELECT seq FROM events WHERE producer = ? AND type NOT LIKE 'cairn.%' ORDER BY seq", [producer]).map((r) => r.seq)
}

/**
 * Starts, in this process, the founding owner a of a new network and c, a data directory of that network with a as
 * founding owner, not yet a member, bootstrapped from a.
 */
async function ownerAndJoiner(parent: string): Promise<{ a: string; na: CairnNode; nc: CairnNode; cId: string }> {
  const a = await initDir(parent, 'a')
  const aId = (await loadIdentity(a)).peerId.toString()
  const c = join(parent, 'c')
  expect((await cairn(['init', '--data', c, '--swarm-key', join(a, 'swarm.key'), '--owner', aId])).code).toBe(0)
  const na = await inProcessNode(a)
  const nc = await inProcessNode(c, { bootstrap: [na.ipfs.libp2p.getMultiaddrs()[0].toString()] })
  return { a, na, nc, cId: nc.peerId.toString() }
}

/**
 * Runs `meanwhile` as `node`'s next membership change is published: after it read what the change records (a
 * removal's last seq), before it is committed.
 */
function beforeNextChangeCommits(node: CairnNode, meanwhile: () => Promise<void>): void {
  const init = (node.members as unknown as { init: { publish: (r: { type: string; payload: unknown }) => Promise<PublishResult> } }).init
  const publish = init.publish
  init.publish = async (request) => {
    init.publish = publish
    await meanwhile()
    return await publish(request)
  }
}

describe("the order of a removal and the removed member's events", () => {
  test("a node that gets the removed member's later head before the removal applies the removal first", async () => {
    using tmp = tempDir()
    const a = await initDir(tmp.path, 'a')
    const aId = (await loadIdentity(a)).peerId.toString()
    const c = await initDir(tmp.path, 'c', join(a, 'swarm.key'))
    const b = join(tmp.path, 'b')
    expect((await cairn(['init', '--data', b, '--swarm-key', join(a, 'swarm.key'), '--owner', aId])).code).toBe(0)
    // Heads re-announced every second, as in production every 5 s: a hint lost while meshes form is not waited out.
    const quick = { 'announce-interval': '1s' }
    const na = await inProcessNode(a, quick)
    const addrA = na.ipfs.libp2p.getMultiaddrs()[0].toString()
    const nc = await inProcessNode(c, { ...quick, bootstrap: [addrA] })
    let nb = await inProcessNode(b, { ...quick, bootstrap: [addrA] })
    const cId = nc.peerId.toString()
    try {
      await na.members.add({ peer_id: nb.peerId.toString() })
      await na.members.add({ peer_id: cId })
      for (let i = 0; i < 3; i++) await nc.publish({ type: 'test.c', payload: { i } })
      await waitFor("c's events on a and b, c a member there", () => seqsOf(a, cId).length === 3 && seqsOf(b, cId).length === 3 && nb.members.isMember(cId) === true)
      await nb.stop()

      // While b is away: a removes c, c sees the removal and writes on (as a release before the refusal of a
      // removed node's publishes would, or a member gone bad).
      const removal = await na.members.remove(cId)
      expect(removal.change).toEqual({ op: 'remove', peer_id: cId, last_seq: 3 })
      await waitFor('c to acknowledge the removal', () => (nc.store.acks()[aId] ?? 0) >= removal.result.seq)
      for (let i = 3; i < 5; i++) await publishThoughRemoved(nc, { type: 'test.c', payload: { i } })
      const laterHead = nc.store.producers.get(cId)!.head_message!

      // b comes back with no peer, is handed c's later head first, and only then reaches c (which has a's head too).
      nb = await inProcessNode(b, quick)
      await nb.offerHead(laterHead)
      const lineOfC = async (): Promise<{ last_error: string | null } | undefined> => (await nb.statusJson()).producers.find((p) => p.producer === cId)
      await waitFor("c's status line on b to show the wait for a", async () => (await lineOfC())?.last_error?.startsWith(`Waiting for the events of owner ${aId} up to seq 3`))
      await nb.ipfs.libp2p.dial(nc.ipfs.libp2p.getMultiaddrs()[0])
      await waitFor('b to apply the removal and finish with c', async () => nb.members.removedAt(cId) != null && !(await nb.statusJson()).syncing)
      expect(seqsOf(b, cId)).toEqual([1, 2, 3])
      expect(query(b, 'SELECT count(*) AS n FROM quarantine WHERE producer = ?', [cId])).toEqual([{ n: 0 }])
      // The wait ended with a's events (whose removal left nothing of c to take): its line says so no more.
      expect((await lineOfC())?.last_error).toBeNull()
    } finally {
      await nb.stop()
      await nc.stop()
      await na.stop()
    }
  }, 120_000)

  test("a node that joins after the removal takes the removed member's events up to the recorded seq, none after", async () => {
    using tmp = tempDir()
    const a = await initDir(tmp.path, 'a')
    const aId = (await loadIdentity(a)).peerId.toString()
    const c = await initDir(tmp.path, 'c', join(a, 'swarm.key'))
    const late = join(tmp.path, 'late')
    expect((await cairn(['init', '--data', late, '--swarm-key', join(a, 'swarm.key'), '--owner', aId])).code).toBe(0)
    const quick = { 'announce-interval': '1s' }
    const na = await inProcessNode(a, quick)
    const addrA = na.ipfs.libp2p.getMultiaddrs()[0].toString()
    const nc = await inProcessNode(c, { ...quick, bootstrap: [addrA] })
    const cId = nc.peerId.toString()
    let nl: Awaited<ReturnType<typeof inProcessNode>> | undefined
    try {
      await na.members.add({ peer_id: cId })
      for (let i = 0; i < 3; i++) await nc.publish({ type: 'test.c', payload: { i } })
      await waitFor("c's events on a", () => seqsOf(a, cId).length === 3)
      expect((await na.members.remove(cId)).change).toEqual({ op: 'remove', peer_id: cId, last_seq: 3 })
      // c's later heads acknowledge a's events up to the removal, so that every node, however late, learns of the
      // removal before it takes them (one that took c's events before it could know of the removal keeps them:
      // kept_after_removal).
      const removalSeq = (await na.statusJson()).outbox.last_seq
      await waitFor("c to have a's events up to the removal", () => (nc.store.producers.get(aId)?.processed_seq ?? 0) >= removalSeq)
      for (let i = 3; i < 5; i++) await publishThoughRemoved(nc, { type: 'test.c', payload: { i } })
      // The late node hears of both from c (which holds a's head too) and from a, in whatever order.
      nl = await inProcessNode(late, { ...quick, bootstrap: [nc.ipfs.libp2p.getMultiaddrs()[0].toString(), addrA] })
      const node = nl
      await waitFor('the late node to apply the removal and take c up to seq 3', async () => {
        const removed = node.members.removedAt(cId) != null
        const seqs = seqsOf(late, cId)
        const status = await node.statusJson()
        if (removed && seqs.length === 3 && !status.syncing) return true
        // What the late node holds, for the timeout's message.
        const line = status.producers.find((p) => p.producer === cId)
        throw new Error(
          `removal ${removed ? 'applied' : 'not applied'}; c's seqs [${seqs.join(', ')}]; syncing ${status.syncing}; c's line ${JSON.stringify(line)}; reasons ${JSON.stringify(status.reasons)}`
        )
      })
      expect(seqsOf(late, cId)).toEqual([1, 2, 3])
      expect((await node.statusJson()).producers.find((p) => p.producer === cId)?.lag_events).toBe(0)
    } finally {
      await nl?.stop()
      await nc.stop()
      await na.stop()
    }
  }, 120_000)

  test('a removed member added again is a member again: the events it wrote meanwhile are taken at once', async () => {
    using tmp = tempDir()
    const { a, na, nc, cId } = await ownerAndJoiner(tmp.path)
    try {
      await na.members.add({ peer_id: cId })
      await nc.publish({ type: 'test.c', payload: { i: 0 } })
      await waitFor("c's event on a", () => seqsOf(a, cId).length === 1)
      await na.members.remove(cId)
      await waitFor('c to know it was removed', () => nc.members.removedAt(cId) != null)
      const refused = async (): Promise<number> => (await na.metrics.rejectedByProducer.get()).values.find((v) => v.labels.producer === cId && v.labels.reason === 'not_member')?.value ?? 0
      for (let i = 1; i < 3; i++) await publishThoughRemoved(nc, { type: 'test.c', payload: { i } })
      await waitFor("a to refuse c's later head", async () => (await refused()) > 0)
      await na.members.add({ peer_id: cId })
      // Heads are re-announced only hourly here: what brings c's head back is the push on the membership change.
      await waitFor("c's events written while removed, on a", () => seqsOf(a, cId).length === 3)
      expect(seqsOf(a, cId)).toEqual([1, 2, 3])
    } finally {
      await nc.stop()
      await na.stop()
    }
  }, 120_000)
  test("the removing owner takes none of the member's events past the seq its removal records, not even one that arrives while the removal commits", async () => {
    using tmp = tempDir()
    const { a, na, nc, cId } = await ownerAndJoiner(tmp.path)
    try {
      await na.members.add({ peer_id: cId })
      for (let i = 0; i < 2; i++) await nc.publish({ type: 'test.c', payload: { i } })
      await waitFor("c's events on a", () => seqsOf(a, cId).length === 2)
      // c's next head reaches a, and a walks it, after a read the seq its removal records and before the
      // removal is committed (as a member that publishes steadily has it).
      beforeNextChangeCommits(na, async () => {
        await nc.publish({ type: 'test.c', payload: { i: 2 } })
        await na.offerHead(nc.store.producers.get(cId)!.head_message!)
        await waitFor("a's walk of c's next head to end", async () => !(await na.statusJson()).syncing)
      })
      expect((await na.members.remove(cId)).change).toEqual({ op: 'remove', peer_id: cId, last_seq: 2 })
      expect(seqsOf(a, cId)).toEqual([1, 2])
      const status = await na.statusJson()
      expect(status.producers.find((p) => p.producer === cId)?.kept_after_removal).toBeNull()
      expect(status.verdict).toBe('healthy')
    } finally {
      await nc.stop()
      await na.stop()
    }
  }, 120_000)

  test("another owner's removal of the same member, with a later last seq, taken while this owner's removal commits: the member's events up to it are taken", async () => {
    using tmp = tempDir()
    const a = await initDir(tmp.path, 'a')
    const aId = (await loadIdentity(a)).peerId.toString()
    const b = join(tmp.path, 'b')
    const c = join(tmp.path, 'c')
    for (const dir of [b, c]) expect((await cairn(['init', '--data', dir, '--swarm-key', join(a, 'swarm.key'), '--owner', aId])).code).toBe(0)
    const quick = { 'announce-interval': '1s' }
    const na = await inProcessNode(a, quick)
    const addrA = na.ipfs.libp2p.getMultiaddrs()[0].toString()
    const nb = await inProcessNode(b, { ...quick, bootstrap: [addrA] })
    const nc = await inProcessNode(c, { ...quick, bootstrap: [addrA] })
    const bId = nb.peerId.toString()
    const cId = nc.peerId.toString()
    try {
      await na.members.add({ peer_id: bId, role: 'owner' })
      await na.members.add({ peer_id: cId })
      await waitFor('b to know itself an owner and c a member', () => nb.members.isMember(cId) === true && nb.members.isOwner(bId) === true)
      for (let i = 0; i < 2; i++) await nc.publish({ type: 'test.c', payload: { i } })
      await waitFor("c's events on a and b", () => seqsOf(a, cId).length === 2 && seqsOf(b, cId).length === 2)
      // While a commits its removal (last seq 2), c writes seq 3, b takes it and removes c (last seq 3), and a takes
      // b's removal: the fold keeps b's, ordered first, and a must take seq 3.
      beforeNextChangeCommits(na, async () => {
        await nc.publish({ type: 'test.c', payload: { i: 2 } })
        await waitFor('seq 3 of c on b', () => seqsOf(b, cId).length === 3)
        const byB = await nb.members.remove(cId)
        expect(byB.change).toEqual({ op: 'remove', peer_id: cId, last_seq: 3 })
        await na.offerHead(nb.store.producers.get(bId)!.head_message!)
        await waitFor("b's removal on a", () => na.store.db.get('SELECT 1 AS x FROM events WHERE producer = ? AND seq = ?', [bId, byB.result.seq]) != null)
      })
      expect((await na.members.remove(cId)).change).toEqual({ op: 'remove', peer_id: cId, last_seq: 2 })
      expect(na.members.removedAt(cId)?.last_seq).toBe(3)
      await waitFor("seq 3 of c on a, as b's removal lets it", () => seqsOf(a, cId).length === 3, 30_000)
      expect(seqsOf(a, cId)).toEqual([1, 2, 3])
    } finally {
      await nc.stop()
      await nb.stop()
      await na.stop()
    }
  }, 120_000)
})
