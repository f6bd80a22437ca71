import { describe, expect, test } from 'bun:test'
import { type ChangeEvent, foldMembers, lastRefused } from '../../src/model/members.ts'
import { fakePeerId } from '../adversary/helpers.ts'

const [A, B, C, D, E] = [1, 2, 3, 4, 5].map(fakePeerId)

let n = 0
/** A change by `producer` stamped at `ms`. */
function change(producer: string, ms: number, payload: unknown): ChangeEvent {
  n++
  return { event_id: `0190${String(n).padStart(4, '0')}-0000-7000-8000-000000000000`, producer, seq: n, hlc: `${String(ms).padStart(13, '0')}-0000`, occurred_at: new Date(ms).toISOString(), payload }
}

/** @returns the members and removed peers, comparable with toEqual */
function view(changes: ChangeEvent[]): unknown {
  const s = foldMembers([A], changes)
  return { members: [...s.members.entries()].sort(), removed: [...s.removed.entries()].sort(), applied: s.applied }
}

/** @returns every order of `xs` */
function permutations<T>(xs: T[]): T[][] {
  if (xs.length <= 1) return [xs]
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((p) => [x, ...p]))
}

describe('foldMembers', () => {
  test('gives the same members whatever order the changes arrive in, conflicting ones included', () => {
    const changes = [
      change(A, 10, { op: 'add', peer_id: B, role: 'owner' }),
      change(A, 20, { op: 'add', peer_id: C, role: 'member', name: 'c' }),
      // B and A at the same time: A removes C, B makes C an owner, and B removes A while A removes B
      change(B, 30, { op: 'add', peer_id: C, role: 'owner' }),
      change(A, 30, { op: 'remove', peer_id: C, last_seq: 7 }),
      change(A, 40, { op: 'remove', peer_id: B, last_seq: 3 }),
      change(B, 40, { op: 'add', peer_id: D, role: 'member' })
    ]
    const results = permutations(changes).map(view)
    for (const r of results) expect(r).toEqual(results[0])
    // At equal hlc the producer decides (A's id sorts first): A's removal of C, then B's add of C as owner;
    // A's removal of B, then B's add of D, which B no longer may make.
    expect(A < B).toBe(true)
    const s = foldMembers([A], changes)
    expect([...s.members.keys()].sort()).toEqual([A, C].sort())
    expect(s.removed.get(B)?.last_seq).toBe(3)
  })

  test("a member's change, a change after the producer's removal and an invalid one do not take effect", () => {
    const s = foldMembers(
      [A],
      [
        change(A, 10, { op: 'add', peer_id: B, role: 'member' }),
        change(B, 20, { op: 'add', peer_id: E, role: 'owner' }),
        change(A, 30, { op: 'add', peer_id: C, role: 'owner' }),
        change(A, 40, { op: 'remove', peer_id: C, last_seq: 0 }),
        change(C, 50, { op: 'add', peer_id: D, role: 'member' }),
        change(A, 60, { op: 'promote', peer_id: D })
      ]
    )
    expect([...s.members.keys()].sort()).toEqual([A, B].sort())
    expect(s.refused.map((r) => r.reason)).toEqual(['not_owner', 'not_owner', 'invalid_members_change'])
  })

  test('the last owner cannot be removed or demoted; a removed peer added again is a member again', () => {
    const s = foldMembers(
      [A],
      [
        change(A, 10, { op: 'remove', peer_id: A, last_seq: 5 }),
        change(A, 15, { op: 'add', peer_id: A, role: 'member' }),
        change(A, 20, { op: 'add', peer_id: B, role: 'member' }),
        change(A, 30, { op: 'remove', peer_id: B, last_seq: 2 }),
        change(A, 40, { op: 'add', peer_id: B, role: 'member' })
      ]
    )
    expect(s.refused.map((r) => r.reason)).toEqual(['last_owner', 'last_owner'])
    expect([...s.members.keys()].sort()).toEqual([A, B].sort())
    expect(s.removed.size).toBe(0)
  })
})

describe("a removed owner's changes past its last valid seq", () => {
  test('take no effect even when they order before the removal: a node that holds them folds the same members as one that refused them', () => {
    const addB = change(A, 10, { op: 'add', peer_id: B, role: 'owner' })
    const addC = change(A, 20, { op: 'add', peer_id: C, role: 'member' })
    // B adds D and makes E an owner, a moment before A removes it having seen none of it (B's seqs are past last_seq).
    const addD = change(B, 30, { op: 'add', peer_id: D, role: 'member' })
    const addE = change(B, 31, { op: 'add', peer_id: E, role: 'owner' })
    const removeB = change(A, 40, { op: 'remove', peer_id: B, last_seq: addD.seq - 1 })
    // E, an owner only by B's voided change, removes C.
    const removeC = change(E, 50, { op: 'remove', peer_id: C, last_seq: 0 })
    const held = [addB, addC, addD, addE, removeB, removeC]
    const refused = [addB, addC, removeB]
    for (const order of permutations(held)) expect(view(order)).toEqual(view(refused))
    const s = foldMembers([A], held)
    expect([...s.members.keys()].sort()).toEqual([A, C].sort())
    expect(s.refused.map((r) => [r.event_id, r.reason])).toEqual([
      [addD.event_id, 'not_member'],
      [addE.event_id, 'not_member'],
      [removeC.event_id, 'not_owner']
    ])
  })

  test('a change within the last valid seq stays, and one the removed owner makes after being added again counts', () => {
    const addB = change(A, 10, { op: 'add', peer_id: B, role: 'owner' })
    const addC = change(B, 20, { op: 'add', peer_id: C, role: 'member' })
    const removeB = change(A, 30, { op: 'remove', peer_id: B, last_seq: addC.seq })
    const readdB = change(A, 40, { op: 'add', peer_id: B, role: 'owner' })
    const addD = change(B, 50, { op: 'add', peer_id: D, role: 'member' })
    const s = foldMembers([A], [addD, readdB, removeB, addC, addB])
    expect([...s.members.keys()].sort()).toEqual([A, B, C, D].sort())
    expect(s.refused).toEqual([])
  })
})

describe('a removal that is itself void', () => {
  test('voids nothing: a node that took it folds the same members as one that refused it', () => {
    const addB = change(A, 10, { op: 'add', peer_id: B, role: 'owner' })
    const addC = change(A, 11, { op: 'add', peer_id: C, role: 'owner' })
    // C adds D; B removes C having not seen it; A removes B having not seen that removal (B's seq past last_seq).
    const addD = change(C, 20, { op: 'add', peer_id: D, role: 'member' })
    const removeC = change(B, 30, { op: 'remove', peer_id: C, last_seq: addD.seq - 1 })
    const removeB = change(A, 40, { op: 'remove', peer_id: B, last_seq: removeC.seq - 1 })
    // A node that got A's removal of B first refuses B's removal of C, and never holds it.
    const refused = [addB, addC, addD, removeB]
    const held = [...refused, removeC]
    for (const order of permutations(held)) expect(view(order)).toEqual(view(refused))
    expect([...foldMembers([A], held).members.keys()].sort()).toEqual([A, C, D].sort())
  })

  test('removals that void each other in a circle end, the same whatever the order', () => {
    const addB = change(A, 10, { op: 'add', peer_id: B, role: 'owner' })
    const addC = change(A, 11, { op: 'add', peer_id: C, role: 'owner' })
    // C removes A; B, not having seen it, removes C; A, not having seen that, removes B.
    const removeA = change(C, 20, { op: 'remove', peer_id: A, last_seq: addC.seq })
    const removeC = change(B, 30, { op: 'remove', peer_id: C, last_seq: removeA.seq - 1 })
    const removeB = change(A, 40, { op: 'remove', peer_id: B, last_seq: removeC.seq - 1 })
    const all = [addB, addC, removeA, removeC, removeB]
    const results = permutations(all).map(view)
    for (const r of results) expect(r).toEqual(results[0])
  })
})

describe('an owner that removes itself', () => {
  // As cairn members remove with its own peer id writes it: last_seq its last seq before the removal, which
  // the removal itself is past.
  test('is removed, the fold ends, and its removal is no refused change', () => {
    const addB = change(A, 10, { op: 'add', peer_id: B, role: 'owner' })
    const addC = change(B, 20, { op: 'add', peer_id: C, role: 'member' })
    const removeB = change(B, 30, { op: 'remove', peer_id: B, last_seq: addC.seq })
    const s = foldMembers([A], [removeB, addC, addB])
    expect([...s.members.keys()].sort()).toEqual([A, C].sort())
    expect(s.removed.get(B)).toMatchObject({ last_seq: addC.seq, removed_by: B, removal_seq: removeB.seq })
    expect(s.refused).toEqual([])
  })

  test('with a last seq below changes it applied: those are void, the removal stands', () => {
    const addB = change(A, 10, { op: 'add', peer_id: B, role: 'owner' })
    const addC = change(B, 20, { op: 'add', peer_id: C, role: 'member' })
    const removeB = change(B, 30, { op: 'remove', peer_id: B, last_seq: addC.seq - 1 })
    const s = foldMembers([A], [addB, addC, removeB])
    expect([...s.members.keys()]).toEqual([A])
    expect(s.removed.get(B)?.removed_by).toBe(B)
    expect(s.refused.map((r) => [r.event_id, r.reason])).toEqual([[addC.event_id, 'not_member']])
  })
})

describe('lastRefused (the members list)', () => {
  test('names the changes refused last to arrive, a backdated one among them, not the last by stamp', () => {
    const addB = change(A, 10, { op: 'add', peer_id: B, role: 'owner' })
    const removeB = change(A, 30, { op: 'remove', peer_id: B, last_seq: 0 })
    // B, no owner any more, writes changes stamped after its removal: each refused, in stamp order.
    const late = Array.from({ length: 25 }, (_, i) => change(B, 100 + i, { op: 'add', peer_id: C, role: 'member' }))
    // Then one stamped back to when it was an owner, arriving last: void (past the seq its removal recorded).
    const backdated = change(B, 20, { op: 'add', peer_id: D, role: 'owner' })
    const arrived = [addB, removeB, ...late, backdated]
    const s = foldMembers([A], arrived)
    expect(s.refused).toHaveLength(26)
    // In the fold's order the backdated change comes first: the last 20 by stamp leave it out.
    expect(s.refused.slice(-20).some((r) => r.event_id === backdated.event_id)).toBe(false)
    const shown = lastRefused(
      s.refused,
      arrived.map((c) => c.event_id),
      20
    )
    expect(shown.map((r) => r.event_id)).toEqual([...late.slice(-19), backdated].map((c) => c.event_id))
    expect(shown.at(-1)?.reason).toBe('not_member')
  })
})
