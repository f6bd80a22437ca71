import { describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadIdentity } from '../src/datadir/load.ts'
import type { CairnNode } from '../src/node/node.ts'
import { fakePeerId } from './adversary/helpers.ts'
import { addr, inProcessNode } from './helpers/forge.ts'
import { initDir, joiner, tempDir, waitFor } from './helpers/process.ts'

/** @returns GET /v1/members of a node, without what differs by node (connected, self) */
async function fetched(node: CairnNode): Promise<unknown> {
  const token = readFileSync(join(node.config.data, 'api.token'), 'utf8').trim()
  const res = await fetch(`http://127.0.0.1:${node.http!.port}/v1/members`, { headers: { authorization: `Bearer ${token}` } })
  const d = (await res.json()) as {
    source: string
    members: Array<{ peer_id: string; role: string; added_by: string | null }>
    removed: Array<{ peer_id: string; last_seq: number; removed_by: string }>
  }
  return { source: d.source, members: d.members.map((m) => [m.peer_id, m.role, m.added_by]), removed: d.removed.map((r) => [r.peer_id, r.last_seq, r.removed_by]) }
}

describe('changes of two owners at about the same time', () => {
  test('an owner adds a member in the same moment another removes it: every node lists the same members', async () => {
    using tmp = tempDir()
    const a = await initDir(tmp.path, 'a')
    const aId = (await loadIdentity(a)).peerId.toString()
    const b = await joiner(tmp.path, 'b', a, aId)
    const c = await joiner(tmp.path, 'c', a, aId)
    const quick = { 'announce-interval': '1s' }
    const na = await inProcessNode(a, quick)
    const nb = await inProcessNode(b, { ...quick, bootstrap: [addr(na)] })
    const nc = await inProcessNode(c, { ...quick, bootstrap: [addr(na), addr(nb)] })
    const all = [na, nb, nc]
    const bId = nb.peerId.toString()
    try {
      await na.members.add({ peer_id: bId, role: 'owner' })
      await na.members.add({ peer_id: nc.peerId.toString() })
      await waitFor('b an owner everywhere', () => all.every((n) => n.members.isOwner(bId)))
      // b's addition is stamped first; a's removal records the seq of b it had seen, which is before it.
      const [added, removal] = await Promise.all([nb.members.add({ peer_id: fakePeerId(7) }), na.members.remove(bId)])
      expect(removal.change).toMatchObject({ last_seq: added.result.seq - 1 })
      await waitFor('every node to apply the removal of b and list the same members', async () => {
        if (!all.every((n) => n.members.removedAt(bId) != null)) return false
        const lists = await Promise.all(all.map(fetched))
        return lists.every((l) => JSON.stringify(l) === JSON.stringify(lists[0]))
      })
      expect(await fetched(nc)).toEqual(await fetched(na))
      expect(all.map((n) => n.members.isMember(fakePeerId(7)))).toEqual([false, false, false])
    } finally {
      for (const n of all) await n.stop()
    }
  }, 120_000)

  test("an owner's change past the last valid seq its removal records counts on no node, not even on one that took it before the removal arrived", async () => {
    using tmp = tempDir()
    const a = await initDir(tmp.path, 'a')
    const aId = (await loadIdentity(a)).peerId.toString()
    const b = await joiner(tmp.path, 'b', a, aId)
    const c = await joiner(tmp.path, 'c', a, aId)
    const quick = { 'announce-interval': '1s', 'publish-fence': '0s' }
    let na = await inProcessNode(a, quick)
    let nb: CairnNode | undefined = await inProcessNode(b, { ...quick, bootstrap: [addr(na)] })
    let nc = await inProcessNode(c, { ...quick, bootstrap: [addr(na), addr(nb)] })
    const bId = nb.peerId.toString()
    const cId = nc.peerId.toString()
    const w = fakePeerId(7)
    try {
      await na.members.add({ peer_id: bId, role: 'owner' })
      await na.members.add({ peer_id: cId })
      await waitFor('b an owner and c a member everywhere', () => [na, nb!, nc].every((n) => n.members.isOwner(bId) && n.members.isMember(cId) === true))

      // b adds w while a is away (as when both change the membership within the same second): c takes b's change.
      await na.stop()
      const added = await nb.members.add({ peer_id: w })
      await waitFor("c to take b's addition of w", () => nc.members.isMember(w) === true)
      await nb.stop()
      nb = undefined
      await nc.stop()

      // a, which never saw b's addition, removes b: b's changes after the seq a had seen are refused everywhere.
      na = await inProcessNode(a, quick)
      const removal = await na.members.remove(bId)
      expect(removal.change).toEqual({ op: 'remove', peer_id: bId, last_seq: added.result.seq - 1 })
      expect(na.members.isMember(w)).toBe(false)

      // c comes back and takes the removal: b's addition, which it holds, is past b's last valid seq.
      nc = await inProcessNode(c, { ...quick, bootstrap: [addr(na)] })
      await waitFor('c to apply the removal of b', () => nc.members.removedAt(bId) != null)
      expect(await fetched(nc)).toEqual(await fetched(na))
      expect(nc.members.isMember(w)).toBe(false)

      // So does b itself, when it comes back.
      nb = await inProcessNode(b, { ...quick, bootstrap: [addr(na)] })
      const nodeB = nb
      await waitFor('b to apply its removal', () => nodeB.members.removedAt(bId) != null)
      expect(await fetched(nodeB)).toEqual(await fetched(na))
    } finally {
      await nb?.stop()
      await nc.stop()
      await na.stop()
    }
  }, 120_000)
})
