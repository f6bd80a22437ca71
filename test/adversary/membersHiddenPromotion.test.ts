import { describe, expect, test } from 'bun:test'
import { uuidv7 } from 'uuidv7'
import { fileName } from '../../src/model/layout.ts'
import { MEMBERS_TYPE } from '../../src/model/members.ts'
import type { CairnNode } from '../../src/node/node.ts'
import { addr, inProcessNode, publishForgedTree } from '../helpers/forge.ts'
import { tempDir, waitFor } from '../helpers/process.ts'
import { fakePeerId, network } from './helpers.ts'

/**
 * Owner `na` makes member `m` an owner; m then adds a new member with a change whose head acknowledges
 * nothing of na's (it hides that it saw its promotion).
 *
 * @returns the member m added, once `na` and `others` applied the change
 */
async function hiddenPromotionChange(na: CairnNode, nm: CairnNode, others: CairnNode[] = []): Promise<string> {
  const m = nm.peerId.toString()
  await na.members.add({ peer_id: m, role: 'owner' })
  await waitFor('m to know it is an owner', () => nm.members.isOwner(m), 20_000)
  const added = fakePeerId(9)
  const change = {
    event_id: uuidv7(),
    type: MEMBERS_TYPE,
    version: 1,
    producer: m,
    seq: 1,
    hlc: `${Date.now()}-0000`,
    occurred_at: new Date().toISOString(),
    payload: { op: 'add', peer_id: added, role: 'member' }
  }
  await publishForgedTree(nm, 1, [{ name: fileName(1, change.event_id), content: change }])
  await waitFor('the change of m to be applied', () => [na, ...others].every((x) => x.members.isMember(added) === true), 20_000)
  return added
}

/**
 * Owner a adds members m and n; while n is stopped, a makes m an owner and m adds a member with a change
 * hiding that it saw its promotion (hiddenPromotionChange).
 *
 * @returns the directories, ids and nodes (n's stopped), and the member m added
 */
async function promotedUnseenByN(parent: string) {
  const {
    dirs: [a, m, n],
    ids: [aId, mId, nId]
  } = await network(parent, ['a', 'm', 'n'])
  const na = await inProcessNode(a)
  const nm = await inProcessNode(m, { bootstrap: [addr(na)] })
  const nn = await inProcessNode(n, { bootstrap: [addr(na)] })
  try {
    await na.members.add({ peer_id: mId })
    await na.members.add({ peer_id: nId })
    await waitFor('n to know m as a member', () => nn.members.isMember(mId) === true, 20_000)
    await nn.stop()
    return { a, n, aId, mId, na, nm, nn, e: await hiddenPromotionChange(na, nm) }
  } catch (err) {
    for (const x of [nn, nm, na]) await x.stop()
    throw err
  }
}

/** Waits until `n` processed `owner`'s events up to the owner's last seq. */
async function caughtUp(n: CairnNode, owner: CairnNode): Promise<void> {
  const id = owner.peerId.toString()
  await waitFor(
    `${n.peerId} to process ${id} to its head`,
    () => {
      const row = n.store.producers.get(id)
      return row != null && row.head_seq >= owner.store.outbox.lastSeq() && row.processed_seq >= row.head_seq
    },
    20_000
  )
}

const quarantined = (n: CairnNode, producer: string): unknown => n.store.db.get('SELECT reason FROM quarantine WHERE producer = ?', [producer])

describe('a member made an owner whose change hides that it saw its promotion: a node reads the change once it holds the promotion, wherever the change arrived first', () => {
  test('a node that walks the change before it holds the promotion keeps it, and applies it once the promotion comes: the member lists agree', async () => {
    using tmp = tempDir()
    const { a, n, aId, mId, nm, e, ...started } = await promotedUnseenByN(tmp.path)
    let { na, nn } = started
    try {
      // a goes offline too, and m does not pass a's head on (it forgets it): n meets m alone.
      await na.stop()
      nm.store.db.run('DELETE FROM producers WHERE producer = ?', [aId])
      nn = await inProcessNode(n, { bootstrap: [addr(nm)] })
      await waitFor("n to take m's change", () => nn.store.producers.get(mId)?.processed_seq === 1, 20_000)
      expect(nn.members.isMember(e)).toBe(false)
      // a comes back: n takes the promotion, and with it reads m's change.
      na = await inProcessNode(a, { bootstrap: [addr(nn)] })
      await waitFor('n to take the promotion', () => nn.members.isOwner(mId), 20_000)
      expect(nn.members.isMember(e)).toBe(true)
      expect(na.members.isMember(e)).toBe(true)
      expect(quarantined(nn, mId)).toBeUndefined()
    } finally {
      await nn.stop()
      await nm.stop()
      await na.stop()
    }
  }, 120_000)

  test("walked as a removed member's on a node without the promotion, the change counts there once the promotion comes", async () => {
    using tmp = tempDir()
    const {
      dirs: [a, d, m, n],
      ids: [aId, dId, mId, nId]
    } = await network(tmp.path, ['a', 'd', 'm', 'n'])
    let na = await inProcessNode(a)
    const nd = await inProcessNode(d, { bootstrap: [addr(na)] })
    const nm = await inProcessNode(m, { bootstrap: [addr(na)] })
    let nn = await inProcessNode(n, { bootstrap: [addr(na)] })
    try {
      await na.members.add({ peer_id: dId, role: 'owner' })
      await na.members.add({ peer_id: mId })
      await na.members.add({ peer_id: nId })
      await waitFor('n to know d as an owner and m as a member', () => nn.members.isOwner(dId) && nn.members.isMember(mId) === true, 20_000)
      await nn.stop()
      const e = await hiddenPromotionChange(na, nm, [nd])
      // d removes m, having seen its seq 1: m's change stays valid (seq 1 <= last_seq 1).
      await waitFor('d to have m at seq 1', () => nd.store.producers.get(mId)?.head_seq === 1, 20_000)
      await nd.members.remove(mId)
      await waitFor('a to apply the removal', () => na.members.removedAt(mId)?.last_seq === 1, 20_000)
      expect(na.members.isMember(e)).toBe(true)
      // a goes offline; d and m do not pass its head on: n meets d and m alone.
      await na.stop()
      nd.store.db.run('DELETE FROM producers WHERE producer = ?', [aId])
      nm.store.db.run('DELETE FROM producers WHERE producer = ?', [aId])
      nn = await inProcessNode(n, { bootstrap: [addr(nd), addr(nm)] })
      await waitFor('n to take the removal of m', () => nn.members.removedAt(mId) != null, 20_000)
      await waitFor("n to process m's seq 1", () => nn.store.producers.get(mId)?.processed_seq === 1, 20_000)
      expect(nn.members.isMember(e)).toBe(false)
      // a comes back: n takes the promotion, and reads m's change with it.
      na = await inProcessNode(a, { bootstrap: [addr(nn)] })
      await caughtUp(nn, na)
      expect([na, nd, nn].map((x) => x.members.isMember(e))).toEqual([true, true, true])
      expect(quarantined(nn, mId)).toBeUndefined()
    } finally {
      await nn.stop()
      await nm.stop()
      await nd.stop()
      await na.stop()
    }
  }, 120_000)

  test('a node that takes the promotion and a demotion in one walk: the change the other nodes applied counts there too', async () => {
    using tmp = tempDir()
    const { a, n, aId, mId, nm, e, ...started } = await promotedUnseenByN(tmp.path)
    let { na, nn } = started
    try {
      // a makes m a member again: its change, stamped while it was an owner, stays.
      await waitFor('a to have m at seq 1', () => na.store.producers.get(mId)?.head_seq === 1, 20_000)
      await na.members.add({ peer_id: mId, role: 'member' })
      expect(na.members.isOwner(mId)).toBe(false)
      expect(na.members.isMember(e)).toBe(true)
      // n meets m alone and takes its change; then a comes back, and n takes the promotion and the demotion together.
      await na.stop()
      nm.store.db.run('DELETE FROM producers WHERE producer = ?', [aId])
      nn = await inProcessNode(n, { bootstrap: [addr(nm)] })
      await waitFor("n to take m's change", () => nn.store.producers.get(mId)?.processed_seq === 1, 20_000)
      expect(nn.members.isMember(e)).toBe(false)
      na = await inProcessNode(a, { bootstrap: [addr(nn)] })
      await caughtUp(nn, na)
      expect(nn.members.isOwner(mId)).toBe(false)
      expect(nn.members.isMember(e)).toBe(true)
    } finally {
      await nn.stop()
      await nm.stop()
      await na.stop()
    }
  }, 120_000)
})
