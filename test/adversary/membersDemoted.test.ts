import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { uuidv7 } from 'uuidv7'
import { initDataDir } from '../../src/datadir/init.ts'
import { loadIdentity } from '../../src/datadir/load.ts'
import { fileName } from '../../src/model/layout.ts'
import { type ChangeEvent, foldMembers, MEMBERS_TYPE } from '../../src/model/members.ts'
import { hlcMs } from '../../src/model/hlc.ts'
import { addr, inProcessNode, publishForgedTree } from '../helpers/forge.ts'
import { tempDir, waitFor } from '../helpers/process.ts'
import { fakePeerId } from './helpers.ts'

const [A, M, E] = [1, 2, 3].map(fakePeerId)

/** A change by `producer` as its seq `seq`, stamped at `ms`. */
function change(producer: string, seq: number, ms: number, payload: unknown): ChangeEvent {
  return { event_id: uuidv7(), producer, seq, hlc: `${String(ms).padStart(13, '0')}-0000`, occurred_at: new Date(ms).toISOString(), payload }
}

/** Two in-process nodes: a, the network's founding owner, and m, a node that joined it (`mOptions` for m's settings). */
async function ownerAndMember(parent: string, mOptions: Record<string, unknown> = {}) {
  const a = join(parent, 'a')
  const m = join(parent, 'm')
  await initDataDir(a, { newNetwork: true })
  const aId = (await loadIdentity(a)).peerId.toString()
  await initDataDir(m, { swarmKeyFile: join(a, 'swarm.key'), owners: [aId] })
  const mId = (await loadIdentity(m)).peerId.toString()
  const na = await inProcessNode(a)
  const nm = await inProcessNode(m, { bootstrap: [addr(na)], ...mOptions })
  return { aId, mId, na, nm }
}

describe('an owner made a member again (demoted)', () => {
  // The first two: a demotion written as a role change alone, as releases before the removal-and-add wrote it.
  test('the fold: a change it writes after a role change alone, stamped before it, makes an owner', () => {
    const s = foldMembers(
      [A],
      [
        change(A, 1, 10, { op: 'add', peer_id: M, role: 'owner' }),
        change(A, 2, 30, { op: 'add', peer_id: M, role: 'member' }),
        // M's first change, written once it was demoted, stamped between its promotion and its demotion.
        change(M, 1, 20, { op: 'add', peer_id: E, role: 'owner' })
      ]
    )
    expect(s.members.get(M)?.role).toBe('member')
    // The demoted owner made a new owner after its demotion.
    expect(s.members.get(E)?.role).toBe('owner')
  })

  test('the fold: a removal of the demoting owner it writes after a role change alone, stamped before it, voids the role change', () => {
    const s = foldMembers(
      [A],
      [
        change(A, 1, 10, { op: 'add', peer_id: M, role: 'owner' }),
        change(A, 2, 30, { op: 'add', peer_id: M, role: 'member' }),
        // Written long after, stamped while M was an owner: A removed, its changes past seq 1 (the demotion) void.
        change(M, 1, 20, { op: 'remove', peer_id: A, last_seq: 1 })
      ]
    )
    expect(s.members.get(M)?.role).toBe('owner')
    expect(s.members.has(A)).toBe(false)
  })

  test('the fold: removed and added back, as cairn members add --role member writes a demotion, its backdated change takes no effect (the removal records its last seq)', () => {
    const s = foldMembers(
      [A],
      [
        change(A, 1, 10, { op: 'add', peer_id: M, role: 'owner' }),
        change(A, 2, 30, { op: 'remove', peer_id: M, last_seq: 0 }),
        change(A, 3, 31, { op: 'add', peer_id: M, role: 'member' }),
        change(M, 1, 20, { op: 'add', peer_id: E, role: 'owner' })
      ]
    )
    expect(s.members.get(M)?.role).toBe('member')
    expect(s.members.has(E)).toBe(false)
  })

  test('live: a change a demoted owner writes stamped back to when it was an owner takes no effect on the owner that demoted it', async () => {
    using tmp = tempDir()
    const { aId, mId, na, nm } = await ownerAndMember(tmp.path)
    try {
      const promoted = await na.members.add({ peer_id: mId, role: 'owner' })
      // The stamps of the promotion and the demotion a few ms apart, for the forged change to fit between them.
      await waitFor('the clock to move', () => Date.now() >= hlcMs(na.store.db.get<{ hlc: string }>('SELECT hlc FROM events WHERE event_id = ?', [promoted.result.event_id])!.hlc)! + 5)
      const demoted = await na.members.add({ peer_id: mId, role: 'member' })
      expect(na.members.isOwner(mId)).toBe(false)
      expect(na.members.isMember(mId)).toBe(true)
      // One commit: the removal recording M's last seq seen here, then the add as a member.
      const written = na.store.db.all<{ payload: string }>("SELECT payload FROM events WHERE producer = ? AND type = 'cairn.members' ORDER BY seq", [aId]).map((r) => JSON.parse(r.payload))
      expect(written.slice(-2)).toEqual([
        { op: 'remove', peer_id: mId, last_seq: 0 },
        { op: 'add', peer_id: mId, role: 'member' }
      ])
      const stamp = (eventId: string): number => hlcMs(na.store.db.get<{ hlc: string }>('SELECT hlc FROM events WHERE event_id = ?', [eventId])!.hlc)!
      const promotedMs = stamp(promoted.result.event_id)
      const demotedMs = stamp(demoted.result.event_id)
      expect(demotedMs).toBeGreaterThanOrEqual(promotedMs)
      // M writes, after its demotion, a change stamped between the two: its own (fresh) key made an owner.
      const at = promotedMs + Math.max(0, Math.floor((demotedMs - promotedMs) / 2))
      const forged = {
        event_id: uuidv7(),
        type: MEMBERS_TYPE,
        version: 1,
        producer: mId,
        seq: 1,
        hlc: `${at}-0001`,
        occurred_at: new Date(at).toISOString(),
        payload: { op: 'add', peer_id: E, role: 'owner' }
      }
      await publishForgedTree(nm, 1, [{ name: fileName(1, forged.event_id), content: forged }], at)
      await waitFor('a to take the change', () => na.store.db.get('SELECT 1 AS x FROM events WHERE event_id = ?', [forged.event_id]) != null, 20_000)
      // Past the last seq its removal recorded: void, whatever its stamp. E is no owner, M no more than a member.
      expect(na.members.isOwner(E)).toBe(false)
      expect(na.members.isMember(E)).toBe(false)
      expect(na.members.isOwner(mId)).toBe(false)
      expect(na.members.isMember(mId)).toBe(true)
      // The members list says which change took no effect, and why.
      const doc = na.members.document()
      expect(doc.refused_total).toBe(1)
      expect(doc.refused).toEqual([{ event_id: forged.event_id, producer: mId, seq: 1, reason: 'not_member', detail: expect.stringContaining(`${mId} was removed by ${aId}`) }])
    } finally {
      await nm.stop()
      await na.stop()
    }
  }, 120_000)
})

describe('the owner being demoted', () => {
  test('does not refuse its own publishes between the removal and the add, however its walks are chunked', async () => {
    using tmp = tempDir()
    // One file per chunk: the removal and the add of one commit are stored by two transactions.
    const { mId, na, nm } = await ownerAndMember(tmp.path, { 'max-files-per-walk': 1 })
    try {
      await na.members.add({ peer_id: mId, role: 'owner' })
      await waitFor('m to be an owner', () => nm.members.isOwner(mId), 20_000)
      const refusedOwn: string[] = []
      let between = 0
      nm.events.listen('events:ingested', () => {
        if (nm.members.removedAt(mId) == null) return
        // It holds its removal alone: a publish now is judged before anything is awaited.
        between++
        nm.publish({ type: 'test.e', payload: { between } }).catch((err: Error) => refusedOwn.push(err.message))
      })
      await na.members.add({ peer_id: mId, role: 'member' })
      await waitFor('m to take its demotion', () => nm.members.isMember(mId) === true && !nm.members.isOwner(mId), 20_000)
      // One file per chunk: m held its removal alone after one of its walk's chunks (the case this test is for).
      expect(between).toBeGreaterThan(0)
      // It did not refuse its backend's publishes then (409 removed_member): the add was still to be walked.
      expect(refusedOwn).toEqual([])
    } finally {
      await nm.stop()
      await na.stop()
    }
  }, 60_000)
})
