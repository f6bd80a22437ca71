import { describe, expect, test } from 'bun:test'
import { fakePeerId } from '../adversary/helpers.ts'
import { membershipOver } from '../helpers/membership.ts'

const SELF = fakePeerId(1)
const OWNER = fakePeerId(2)
const OTHER = fakePeerId(3)
const X = fakePeerId(4)

describe('the membership tells the node only of changes that alter it', () => {
  test('a change that alters nothing (a repeat, or one from a producer that is no owner) pushes no heads', async () => {
    let changes = 0
    const {
      membership,
      change,
      ingest: take
    } = await membershipOver(OWNER, SELF, {
      onChange: () => {
        changes++
      }
    })
    const seqs = new Map<string, number>()
    const ingest = (producer: string, payload: unknown): void => {
      const seq = (seqs.get(producer) ?? 0) + 1
      seqs.set(producer, seq)
      take(change(producer, seq, seq, payload))
    }
    ingest(OWNER, { op: 'add', peer_id: X, role: 'member' })
    expect(changes).toBe(1)
    expect(membership.isMember(X)).toBe(true)
    // the same add again: the members are as they were
    ingest(OWNER, { op: 'add', peer_id: X, role: 'member' })
    expect(changes).toBe(1)
    // a member's change changes nothing (the fold does not read it)
    ingest(X, { op: 'add', peer_id: OTHER, role: 'owner' })
    expect(changes).toBe(1)
    expect(membership.isMember(OTHER)).toBe(false)
    ingest(OWNER, { op: 'remove', peer_id: X, last_seq: 1 })
    expect(changes).toBe(2)
    membership.stop()
  })
})

describe('a member waits for the changes of owners it had seen', () => {
  test('but not for those of a peer whose owner role never took effect here: none of its events is ever taken', async () => {
    const { membership, change, ingest: take } = await membershipOver(OWNER, SELF)
    const ingest = (producer: string, seq: number, ms: number, payload: unknown): void => take(change(producer, seq, ms, payload))
    const M = fakePeerId(5)
    ingest(OWNER, 1, 10, { op: 'add', peer_id: OTHER, role: 'owner' })
    ingest(OWNER, 2, 11, { op: 'add', peer_id: M, role: 'member' })
    // OTHER makes X an owner a moment before OWNER removes it having not seen that: the change is void.
    ingest(OTHER, 1, 20, { op: 'add', peer_id: X, role: 'owner' })
    ingest(OWNER, 3, 30, { op: 'remove', peer_id: OTHER, last_seq: 0 })
    expect(membership.isMember(X)).toBe(false)
    // M took X's events where the change had taken effect for a while, and acknowledges them.
    expect(membership.waitFor(M, { [X]: 3, [OWNER]: 3 }, { [OWNER]: 3 })).toBeUndefined()
    expect(membership.waitFor(M, { [OWNER]: 3 }, { [OWNER]: 2 })).toEqual({ owner: OWNER, seq: 3 })
    membership.stop()
  })
})
