import { describe, expect, test } from 'bun:test'
import { addr, inProcessNode } from '../helpers/forge.ts'
import { tempDir, waitFor } from '../helpers/process.ts'
import { fakePeerId, network } from './helpers.ts'

describe('an owner removed, and the owner it made meanwhile', () => {
  test('an honest member made an owner by a change a removal then voids: every node takes the events it writes after its change', async () => {
    using tmp = tempDir()
    const {
      dirs: [a, d, b, y],
      ids: [aId, dId, bId, yId]
    } = await network(tmp.path, ['a', 'd', 'b', 'y'])
    let na = await inProcessNode(a)
    let nd = await inProcessNode(d, { bootstrap: [addr(na)] })
    let nb = await inProcessNode(b, { bootstrap: [addr(na)] })
    let ny = await inProcessNode(y, { bootstrap: [addr(na)] })
    try {
      await na.members.add({ peer_id: dId, role: 'owner' })
      await na.members.add({ peer_id: bId })
      await na.members.add({ peer_id: yId })
      const aSeq = na.store.outbox.lastSeq()
      await waitFor('d and y to hold all of a', () => [nd, ny].every((x) => x.store.producers.get(aId)?.processed_seq === aSeq) && ny.members.isMember(bId) === true, 20_000)
      // d and y go offline; a makes b an owner; b, an owner now as far as it knows, adds E through the API.
      await nd.stop()
      await ny.stop()
      await na.members.add({ peer_id: bId, role: 'owner' })
      await waitFor('b to know it is an owner', () => nb.members.isOwner(bId), 20_000)
      const e = fakePeerId(9)
      await nb.members.add({ peer_id: e })
      await waitFor("a to take b's change", () => na.store.producers.get(bId)?.processed_seq === nb.store.outbox.lastSeq(), 20_000)
      // a and b go offline; d, alone, removes a, having seen a up to aSeq (before the promotion).
      await nb.stop()
      await na.stop()
      nd = await inProcessNode(d)
      await nd.members.remove(aId)
      expect(nd.members.removedAt(aId)?.last_seq).toBe(aSeq)
      // Everyone comes back.
      ny = await inProcessNode(y, { bootstrap: [addr(nd)] })
      await waitFor('y to take the removal of a', () => ny.members.removedAt(aId) != null, 20_000)
      na = await inProcessNode(a, { bootstrap: [addr(nd)] })
      nb = await inProcessNode(b, { bootstrap: [addr(nd)] })
      await waitFor('b to take the removal of a', () => nb.members.removedAt(aId) != null, 20_000)
      // b, a member again, goes on publishing as members do.
      await nb.publish({ type: 'test.after', payload: { n: 1 } })
      const bSeq = nb.store.outbox.lastSeq()
      await waitFor("a to take b's later event", () => na.store.producers.get(bId)?.processed_seq === bSeq, 20_000)
      // Every node agrees b's change counts for nothing ...
      for (const x of [na, nb, nd, ny]) expect(x.members.isMember(e)).toBe(false)
      // ... and every node takes b's events after it, the nodes that refused the promotion too.
      await waitFor("y and d to take b's later event", () => [ny, nd].every((x) => x.store.producers.get(bId)?.processed_seq === bSeq), 20_000)
    } finally {
      for (const x of [ny, nb, nd, na]) await x.stop()
    }
  }, 120_000)
})
