import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { uuidv7 } from 'uuidv7'
import { loadIdentity } from '../../src/datadir/load.ts'
import { fileName } from '../../src/model/layout.ts'
import { loadPlugins } from '../../src/plugins/load.ts'
import { definePlugin } from '../../src/plugins/types.ts'
import * as v from 'valibot'
import { query } from '../helpers/db.ts'
import { inProcessNode, publishForgedTree, publishRefusedRounds } from '../helpers/forge.ts'
import { initDir, tempDir, waitFor } from '../helpers/process.ts'
import { fakePeerId } from './helpers.ts'
import { MAX_REFUSED_PER_WALK } from '../../src/sync/plan.ts'
import { QUARANTINE_KEEP } from '../../src/store/quarantine.ts'

/** Owner a (its node na) and member m (its node nm, bootstrapped to a), m added by a. */
async function ownerAndMember(parent: string): Promise<{ a: string; mId: string; na: Awaited<ReturnType<typeof inProcessNode>>; nm: Awaited<ReturnType<typeof inProcessNode>> }> {
  const a = await initDir(parent, 'a')
  const m = await initDir(parent, 'm', join(a, 'swarm.key'))
  const mId = (await loadIdentity(m)).peerId.toString()
  const na = await inProcessNode(a)
  const nm = await inProcessNode(m, { bootstrap: [na.ipfs.libp2p.getMultiaddrs()[0].toString()] })
  try {
    await na.members.add({ peer_id: mId, name: 'm' })
  } catch (err) {
    await nm.stop()
    await na.stop()
    throw err
  }
  return { a, mId, na, nm }
}

/** An event `producer` writes into its own tree as seq 1 at `atMs`: the envelope as an outbox would write it. */
function ownEvent(producer: string, type: string, payload: unknown, atMs = Date.now()): { event_id: string; [field: string]: unknown } {
  return { event_id: uuidv7(), type, version: 1, producer, seq: 1, hlc: `${atMs}-0000`, occurred_at: new Date(atMs).toISOString(), payload }
}

/** @returns how many changes `node` refused or held as not an owner's */
async function notOwner(node: Awaited<ReturnType<typeof inProcessNode>>): Promise<number> {
  return (await node.metrics.rejected.get()).values.find((s) => s.labels.reason === 'not_owner')?.value ?? 0
}

describe('forged membership changes', () => {
  test("a member's own cairn.members change is held where it arrives, with its later events: counted, never stored, and its status says why; once an owner removes the member it is quarantined, and the events up to the removal are taken", async () => {
    using tmp = tempDir()
    const { a, mId, na, nm } = await ownerAndMember(tmp.path)
    try {
      const x = fakePeerId(7)
      const forged = ownEvent(mId, 'cairn.members', { op: 'add', peer_id: x, role: 'owner' })
      const later = { ...ownEvent(mId, 'test.e', { n: 2 }), seq: 2 }
      const again = { ...ownEvent(mId, 'cairn.members', { op: 'remove', peer_id: na.peerId.toString() }), seq: 3 }
      await publishForgedTree(nm, 3, [
        { name: fileName(1, forged.event_id), content: forged },
        { name: fileName(2, later.event_id), content: later },
        { name: fileName(3, again.event_id), content: again }
      ])
      await waitFor('a to hold the forged change', async () => (await notOwner(na)) >= 1)
      expect(query(a, 'SELECT count(*) AS n FROM quarantine')).toEqual([{ n: 0 }])
      expect(query(a, 'SELECT count(*) AS n FROM events WHERE producer = ?', [mId])).toEqual([{ n: 0 }])
      expect(na.members.isMember(x)).toBe(false)
      expect(
        na.members
          .document()
          .members.map((e) => e.peer_id)
          .sort()
      ).toEqual([na.peerId.toString(), mId].sort())
      const held = (await na.statusJson()).producers.find((p) => p.producer === mId)
      expect(held?.processed_seq).toBe(0)
      expect(held?.lag_events).toBe(3)
      expect(held?.last_error).toBe(`${mId} changed the membership at seq 1 but is not an owner: its events from there wait until an owner makes it one, or removes it`)

      // Removed, it can never have been an owner when it wrote the change: the change is refused, and the walk goes on.
      await na.members.remove(mId)
      await waitFor("a to take m's seq 2", () => query<{ n: number }>(a, 'SELECT count(*) AS n FROM events WHERE producer = ?', [mId])[0].n === 1)
      await waitFor('a to process m to seq 3', () => na.store.producers.get(mId)?.processed_seq === 3)
      expect(query(a, 'SELECT producer, reason FROM quarantine')).toEqual([
        { producer: mId, reason: 'not_owner' },
        { producer: mId, reason: 'not_owner' }
      ])
      const after = (await na.statusJson()).producers.find((p) => p.producer === mId)
      expect([after?.processed_seq, after?.lag_events, after?.last_error]).toEqual([3, 0, null])
      expect(na.members.isMember(x)).toBe(false)
    } finally {
      await nm.stop()
      await na.stop()
    }
  }, 120_000)

  test("a member's forged change, quarantined once the member is removed, stays in quarantine however many refused files it writes after it is added again", async () => {
    using tmp = tempDir()
    const { a, mId, na, nm } = await ownerAndMember(tmp.path)
    try {
      const refused = async (reason: string): Promise<number> => (await na.metrics.rejected.get()).values.find((s) => s.labels.reason === reason)?.value ?? 0
      const perBucket = Math.floor(MAX_REFUSED_PER_WALK * 0.9)
      const rounds = Math.ceil((QUARANTINE_KEEP * 1.5) / perBucket)
      const hourOf = (r: number): number => Date.now() - (rounds + 1 - r) * 3_600_000
      const forged = ownEvent(mId, 'cairn.members', { op: 'add', peer_id: mId, role: 'owner' }, hourOf(0))
      await publishForgedTree(nm, 1, [{ name: fileName(1, forged.event_id), content: forged }], hourOf(0))
      await waitFor('a to hold the forged change', async () => (await refused('not_owner')) >= 1)
      await na.members.remove(mId)
      await waitFor('a to quarantine the forged change', () => query(a, 'SELECT reason FROM quarantine WHERE producer = ?', [mId]).length === 1)
      await na.members.add({ peer_id: mId, name: 'm' })
      // Then names that are no event file's, each a new path, in a new hour bucket each round: more than the
      // quarantine keeps of one producer.
      await publishRefusedRounds(nm, { rounds, perBucket, firstSeq: 2, hourOf: (k) => hourOf(k + 1), counted: async () => await refused('name_mismatch') })
      expect(query(a, 'SELECT reason, count(*) AS n FROM quarantine WHERE producer = ? GROUP BY reason ORDER BY reason', [mId])).toEqual([
        { reason: 'name_mismatch', n: QUARANTINE_KEEP },
        { reason: 'not_owner', n: 1 }
      ])
      expect(na.members.isOwner(mId)).toBe(false)
    } finally {
      await nm.stop()
      await na.stop()
    }
  }, 180_000)

  test("an event of another type in cairn's reserved namespace is refused where it arrives: it would be kept for ever, past every retention", async () => {
    using tmp = tempDir()
    const { a, mId, na, nm } = await ownerAndMember(tmp.path)
    try {
      const squatted = ownEvent(mId, 'cairn.junk', { filler: 'x' })
      await publishForgedTree(nm, 1, [{ name: fileName(1, squatted.event_id), content: squatted }])
      await waitFor('a to refuse the reserved type', async () => (await na.metrics.rejected.get()).values.some((s) => s.labels.reason === 'reserved_type' && s.value >= 1))
      expect(query(a, 'SELECT producer, reason FROM quarantine')).toEqual([{ producer: mId, reason: 'reserved_type' }])
      expect(query(a, "SELECT count(*) AS n FROM events WHERE type LIKE 'cairn.%' AND producer = ?", [mId])).toEqual([{ n: 0 }])
    } finally {
      await nm.stop()
      await na.stop()
    }
  }, 120_000)

  test('no plugin may declare a type in the cairn. namespace', async () => {
    const plugin = definePlugin({ name: 'squatter', handles: { 'cairn.members': { version: 1, payload: v.unknown() } }, apply() {} })
    await expect(loadPlugins([plugin], [])).rejects.toThrow(
      'Cannot load plugin "squatter" from built-in: handles: Expected no event type in cairn\'s reserved namespace cairn.* (cairn\'s own membership changes)'
    )
  })
})
