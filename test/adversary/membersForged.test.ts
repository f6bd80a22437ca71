import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { uuidv7 } from 'uuidv7'
import { loadIdentity } from '../../src/datadir/load.ts'
import { fileName } from '../../src/model/layout.ts'
import { loadPlugins } from '../../src/plugins/load.ts'
import { definePlugin } from '../../src/plugins/types.ts'
import * as v from 'valibot'
import { query } from '../helpers/db.ts'
import { inProcessNode, publishForgedTree } from '../helpers/forge.ts'
import { initDir, tempDir, waitFor } from '../helpers/process.ts'
import { fakePeerId } from './helpers.ts'

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

/** @returns how many changes `node` counted as not an owner's */
async function notOwner(node: Awaited<ReturnType<typeof inProcessNode>>): Promise<number> {
  return (await node.metrics.rejected.get()).values.find((s) => s.labels.reason === 'not_owner')?.value ?? 0
}

describe('forged membership changes', () => {
  test("a member's own cairn.members change takes effect nowhere: kept as its other events are, counted, and read by no fold; its later events are taken", async () => {
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
      await waitFor('a to take m to seq 3', () => na.store.producers.get(mId)?.processed_seq === 3)
      expect(await notOwner(na)).toBe(2)
      expect(query(a, 'SELECT count(*) AS n FROM quarantine')).toEqual([{ n: 0 }])
      expect(query(a, 'SELECT seq, type FROM events WHERE producer = ? ORDER BY seq', [mId])).toEqual([
        { seq: 1, type: 'cairn.members' },
        { seq: 2, type: 'test.e' },
        { seq: 3, type: 'cairn.members' }
      ])
      expect(na.members.isMember(x)).toBe(false)
      expect(na.members.isOwner(na.peerId.toString())).toBe(true)
      expect(
        na.members
          .document()
          .members.map((e) => e.peer_id)
          .sort()
      ).toEqual([na.peerId.toString(), mId].sort())
      expect(na.members.document().refused_total).toBe(0)
    } finally {
      await nm.stop()
      await na.stop()
    }
  }, 120_000)

  test("with events-retention, a member's changes go with its other events, and the owners' changes stay", async () => {
    using tmp = tempDir()
    const a = await initDir(tmp.path, 'a')
    const m = await initDir(tmp.path, 'm', join(a, 'swarm.key'))
    const mId = (await loadIdentity(m)).peerId.toString()
    const na = await inProcessNode(a, { 'events-retention': '1s' })
    const nm = await inProcessNode(m, { bootstrap: [na.ipfs.libp2p.getMultiaddrs()[0].toString()] })
    try {
      await na.members.add({ peer_id: mId, name: 'm' })
      const forged = ownEvent(mId, 'cairn.members', { op: 'add', peer_id: mId, role: 'owner' })
      const later = { ...ownEvent(mId, 'test.e', { n: 2 }), seq: 2 }
      await publishForgedTree(nm, 2, [
        { name: fileName(1, forged.event_id), content: forged },
        { name: fileName(2, later.event_id), content: later }
      ])
      await waitFor('a to take m to seq 2', () => na.store.producers.get(mId)?.processed_seq === 2)
      const rowsOf = (producer: string): number => query<{ n: number }>(a, 'SELECT count(*) AS n FROM events WHERE producer = ?', [producer])[0].n
      const owners = rowsOf(na.peerId.toString())
      expect(owners).toBeGreaterThan(0)
      await waitFor("a's housekeeping to delete m's rows", async () => {
        await na.housekeeping()
        return rowsOf(mId) === 0
      })
      expect(rowsOf(na.peerId.toString())).toBe(owners)
      expect(na.members.isMember(mId)).toBe(true)
    } finally {
      await nm.stop()
      await na.stop()
    }
  }, 120_000)

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
