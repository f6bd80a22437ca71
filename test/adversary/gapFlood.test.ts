import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { initDataDir } from '../../src/datadir/init.ts'
import { addr, inProcessNode, publishForgedTree } from '../helpers/forge.ts'
import { recordingLog } from '../helpers/log.ts'
import { tempDir, waitFor } from '../helpers/process.ts'

describe('heads that each skip one seq, with no file at all', () => {
  test('cost the victim one gap row and one warning each, however few events the member serves', async () => {
    using tmp = tempDir()
    const a = join(tmp.path, 'a')
    const m = join(tmp.path, 'm')
    await initDataDir(a, { newNetwork: true })
    await initDataDir(m, { swarmKeyFile: join(a, 'swarm.key') })
    const { log, lines } = recordingLog()
    const victim = await inProcessNode(a, {}, log)
    const member = await inProcessNode(m, { bootstrap: [addr(victim)] })
    try {
      const me = member.peerId.toString()
      const heads = 100
      for (let seq = 1; seq <= heads; seq++) {
        // A tree of no event file under a head of seq `seq`: the seq is missing, and nothing else changed.
        await publishForgedTree(member, seq, [])
        await waitFor(`seq ${seq} passed over`, () => (victim.store.producers.get(me)?.processed_seq ?? 0) >= seq, 20_000)
      }
      const rows = victim.store.db.get<{ n: number }>('SELECT count(*) AS n FROM gaps WHERE producer = ?', [me])?.n
      // One row per head, none ever deleted (events-retention, pruning and the snapshots leave gaps as they are),
      // and one warning line per head, up to GAPS_KEEP rows of each kind of the member (test/unit/gapsBound.test.ts).
      expect(rows).toBe(heads)
      // The first head's gap is where this node's history of the member starts (horizon, logged as info).
      expect(lines.filter((l) => l.level === 'warn' && l.fields.reason === 'gap_lost')).toHaveLength(heads - 1)
      expect(victim.store.db.get<{ n: number }>('SELECT count(*) AS n FROM events WHERE producer = ?', [me])?.n).toBe(0)
    } finally {
      await member.stop()
      await victim.stop()
    }
  }, 120_000)
})
