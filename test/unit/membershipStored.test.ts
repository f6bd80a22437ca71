import { describe, expect, test } from 'bun:test'
import type { EventEnvelope } from '../../src/model/envelope.ts'
import { fakePeerId } from '../adversary/helpers.ts'
import { membershipOver } from '../helpers/membership.ts'

const SELF = fakePeerId(1)
const OWNER = fakePeerId(2)
const M = fakePeerId(5)
const X = fakePeerId(6)
const Y = fakePeerId(7)
const Z = fakePeerId(8)

const harness = async () => await membershipOver(OWNER, SELF)

describe("a member's membership changes, stored as its other events are", () => {
  test("those it wrote before its promotion are not read by the fold, however many: they cannot push the owners' later changes past the fold's limit", async () => {
    const { membership, change, ingest } = await harness()
    ingest(change(OWNER, 1, 10, { op: 'add', peer_id: M, role: 'member' }))
    // M, a member, writes 100 000 changes into its own outbox: each is stored and takes no effect.
    const junk: EventEnvelope[] = []
    for (let seq = 1; seq <= 100_000; seq++) junk.push(change(M, seq, 11, { op: 'add', peer_id: X, role: 'owner' }))
    ingest(...junk)
    expect(membership.isMember(X)).toBe(false)
    // Later, an owner makes M an owner, then adds Z.
    ingest(change(OWNER, 2, 1_000_000, { op: 'add', peer_id: M, role: 'owner' }))
    ingest(change(OWNER, 3, 1_000_001, { op: 'add', peer_id: Z, role: 'member' }))
    expect(membership.isMember(X)).toBe(false)
    expect(membership.isOwner(M)).toBe(true)
    expect(membership.isMember(Z)).toBe(true)
    membership.stop()
  }, 120_000)

  test('with events-retention, a change of a new owner taken before its promotion and deleted before the promotion arrives never counts here (a limit SECURITY.md states)', async () => {
    const { store, membership, change, ingest } = await harness()
    ingest(change(OWNER, 1, 10, { op: 'add', peer_id: M, role: 'member' }))
    // OWNER makes M an owner (stamp 20), and M adds Y (stamp 30); this node takes M's change first (its head
    // hides the promotion), as membersHiddenPromotion's node n does.
    const promotion = change(OWNER, 2, 20, { op: 'add', peer_id: M, role: 'owner' })
    ingest(change(M, 1, 30, { op: 'add', peer_id: Y, role: 'member' }))
    expect(membership.isMember(Y)).toBe(false)
    // The plugins processed it, and events-retention passes before the promotion arrives.
    store.events.markDone(store.events.maxCursor(), [])
    store.events.deleteProcessedBefore(Date.now() + 1, membership.changeAuthors())
    ingest(promotion)
    expect(membership.isOwner(M)).toBe(true)
    // Every node that held the promotion first counts Y a member; this one no longer holds the change.
    expect(membership.isMember(Y)).toBe(false)
    membership.stop()
  })

  test('a change a new owner stamped before its promotion, arriving after it, is counted not_owner as it would be arriving before it', async () => {
    const { events, membership, change, ingest } = await harness()
    const rejected: Array<{ reason: string; producer?: string; detail: string }> = []
    events.listen('peer:rejected', (d) => rejected.push(d as never))
    ingest(change(OWNER, 1, 10, { op: 'add', peer_id: M, role: 'member' }))
    ingest(change(OWNER, 2, 1000, { op: 'add', peer_id: M, role: 'owner' }))
    expect(membership.isOwner(M)).toBe(true)
    // M's change written while a member (stamp 500, before the promotion's) reaches this node only now
    const early = change(M, 1, 500, { op: 'add', peer_id: Y, role: 'member' })
    ingest(early)
    expect(membership.isMember(Y)).toBe(false)
    expect(rejected.filter((r) => r.reason === 'not_owner' && r.producer === M && r.detail.includes(early.event_id))).toHaveLength(1)
    membership.stop()
  })

  test("a demoted owner's changes written once a member, however many, do not push the owners' later changes past the fold's limit", async () => {
    const { membership, change, ingest } = await harness()
    ingest(change(OWNER, 1, 10, { op: 'add', peer_id: M, role: 'owner' }))
    // OWNER demotes M (a member again: its heads are still taken)
    ingest(change(OWNER, 2, 20, { op: 'add', peer_id: M, role: 'member' }))
    expect(membership.isOwner(M)).toBe(false)
    expect(membership.isMember(M)).toBe(true)
    // M, a member now, writes 100 000 changes into its own outbox: each is stored and takes no effect.
    const junk: EventEnvelope[] = []
    for (let seq = 1; seq <= 100_000; seq++) junk.push(change(M, seq, 30, { op: 'add', peer_id: X, role: 'owner' }))
    ingest(...junk)
    expect(membership.isMember(X)).toBe(false)
    // Later, OWNER adds Z.
    ingest(change(OWNER, 3, 1_000_000, { op: 'add', peer_id: Z, role: 'member' }))
    expect(membership.isMember(Z)).toBe(true)
    membership.stop()
  }, 120_000)
})
