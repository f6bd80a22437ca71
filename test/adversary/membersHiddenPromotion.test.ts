import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { uuidv7 } from 'uuidv7'
import { initDataDir } from '../../src/datadir/init.ts'
import { loadIdentity } from '../../src/datadir/load.ts'
import { fileName } from '../../src/model/layout.ts'
import { MEMBERS_TYPE } from '../../src/model/members.ts'
import { addr, inProcessNode, publishForgedTree } from '../helpers/forge.ts'
import { tempDir, waitFor } from '../helpers/process.ts'
import { fakePeerId } from './helpers.ts'

describe('a member made an owner whose change hides that it saw its promotion', () => {
  test('a node that walks the change before it holds the promotion holds it until the promotion comes, then applies it: the member lists agree', async () => {
    using tmp = tempDir()
    const [a, m, n] = ['a', 'm', 'n'].map((x) => join(tmp.path, x))
    await initDataDir(a, { newNetwork: true })
    const aId = (await loadIdentity(a)).peerId.toString()
    await initDataDir(m, { swarmKeyFile: join(a, 'swarm.key'), owners: [aId] })
    await initDataDir(n, { swarmKeyFile: join(a, 'swarm.key'), owners: [aId] })
    const mId = (await loadIdentity(m)).peerId.toString()
    const nId = (await loadIdentity(n)).peerId.toString()
    let na = await inProcessNode(a)
    const nm = await inProcessNode(m, { bootstrap: [addr(na)] })
    let nn = await inProcessNode(n, { bootstrap: [addr(na)] })
    try {
      await na.members.add({ peer_id: mId })
      await na.members.add({ peer_id: nId })
      await waitFor('n to know m as a member', () => nn.members.isMember(mId) === true, 20_000)
      // n goes offline; a makes m an owner; m adds E as a member, its head acknowledging nothing of a's.
      await nn.stop()
      await na.members.add({ peer_id: mId, role: 'owner' })
      await waitFor('m to know it is an owner', () => nm.members.isOwner(mId), 20_000)
      const e = fakePeerId(9)
      const change = {
        event_id: uuidv7(),
        type: MEMBERS_TYPE,
        version: 1,
        producer: mId,
        seq: 1,
        hlc: `${Date.now()}-0000`,
        occurred_at: new Date().toISOString(),
        payload: { op: 'add', peer_id: e, role: 'member' }
      }
      await publishForgedTree(nm, 1, [{ name: fileName(1, change.event_id), content: change }])
      await waitFor('a to apply the change of m', () => na.members.isMember(e) === true, 20_000)
      // a goes offline too, and m does not pass a's head on (it forgets it): n meets m alone.
      await na.stop()
      nm.store.db.run('DELETE FROM producers WHERE producer = ?', [aId])
      nn = await inProcessNode(n, { bootstrap: [addr(nm)] })
      await waitFor("n to hold m's change", () => nn.store.producers.get(mId)?.last_error?.includes('changed the membership at seq 1 but is not an owner') === true, 20_000)
      expect(nn.members.isMember(e)).toBe(false)
      // a comes back: n takes the promotion, then m's change.
      na = await inProcessNode(a, { bootstrap: [addr(nn)] })
      await waitFor('n to take the promotion', () => nn.members.isOwner(mId), 20_000)
      await waitFor("n to apply m's change", () => nn.members.isMember(e) === true, 20_000)
      expect(na.members.isMember(e)).toBe(true)
      expect(nn.store.db.get('SELECT 1 AS x FROM quarantine WHERE producer = ?', [mId])).toBeUndefined()
      const row = nn.store.producers.get(mId)
      expect([row?.processed_seq, row?.last_error]).toEqual([1, null])
    } finally {
      await nn.stop()
      await nm.stop()
      await na.stop()
    }
  }, 120_000)
})
