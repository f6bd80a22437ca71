import { describe, expect, test } from 'bun:test'
import { NodeProcess, tempDir } from '../helpers/process.ts'
import { query } from '../helpers/db.ts'
import { inProcessNode, publishRefusedRounds } from '../helpers/forge.ts'
import { MAX_REFUSED_PER_WALK } from '../../src/sync/plan.ts'
import { QUARANTINE_KEEP } from '../../src/store/quarantine.ts'

async function refusedNames(node: NodeProcess): Promise<number> {
  const m = /^cairn_rejected_total\{reason="name_mismatch"\} (\d+)/m.exec(await (await fetch(`http://${node.http}/metrics`)).text())
  return m == null ? 0 : Number(m[1])
}

describe('a member writing refused files without end', () => {
  test('keeps only its newest quarantine entries on the other nodes, every refusal still counted', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using hostile = await NodeProcess.init(tmp.path, 'x', { network: a })
    await a.start()
    const x = await inProcessNode(hostile.dir, { bootstrap: [a.addrs[0]] })
    try {
      const me = x.peerId.toString()
      // Names that are no event file's (seq-event_id.json), each a new path: fewer than a walk refuses a
      // tree for, in a new hour bucket each time (the walk then lists only that bucket).
      const perBucket = Math.floor(MAX_REFUSED_PER_WALK * 0.9)
      const rounds = Math.ceil((QUARANTINE_KEEP * 1.5) / perBucket)
      await publishRefusedRounds(x, { rounds, perBucket, firstSeq: 1, hourOf: (k) => Date.now() - (rounds - k) * 3_600_000, counted: async () => await refusedNames(a) })
      expect(await refusedNames(a)).toBe(rounds * perBucket)
      const kept = query<{ path: string }>(a.dir, 'SELECT path FROM quarantine WHERE producer = ? ORDER BY id', [me])
      expect(kept.length).toBe(QUARANTINE_KEEP)
      // the newest: the last round's names are all there
      expect(kept.filter((k) => k.path.includes(`junk-${rounds - 1}-`)).length).toBe(perBucket)
    } finally {
      await x.stop()
    }
  }, 180_000)
})
