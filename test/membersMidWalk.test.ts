import { describe, expect, test } from 'bun:test'
import type { CID } from 'multiformats/cid'
import { waitFor as waitForEvent } from '../src/node/events.ts'
import type { EventEnvelope } from '../src/model/envelope.ts'
import { eventFile, forger, headOf, honestTree, seqsOf, victim } from './adversary/walkForge.ts'

describe('a membership change that arrives while a walk of the member is under way', () => {
  test("a removal stops the walk at the member's last valid seq, as one known at its start would: added again, the member's later events are taken", async () => {
    const p = await forger()
    const files: Awaited<ReturnType<typeof eventFile>>[] = []
    for (let seq = 1; seq <= 6; seq++) files.push(await eventFile(p, seq))
    const head = await headOf(p, 6, await honestTree(p, files))
    // The removal (last valid seq 3) is applied while the walk fetches the member's first event file.
    let removed: { last_seq: number; removed_by: string } | undefined
    const removal = { last_seq: 3, removed_by: 'the owner' }
    const firstFile: CID = files[0].cid
    const v = await victim([p], {
      before: (cid) => {
        if (cid.equals(firstFile)) removed ??= removal
      },
      membership: {
        isMember: () => true,
        removedAt: () => removed,
        checkEvent: (e: EventEnvelope) =>
          removed != null && e.seq > removed.last_seq ? { reason: 'not_member', detail: `${e.producer} was removed: its events after seq ${removed.last_seq} are refused` } : undefined
      }
    })
    try {
      const idle = waitForEvent(v.events, 'sync:idle', { signal: AbortSignal.timeout(30_000) })
      await v.syncer.offerHead(head)
      await idle
      expect(removed).toBe(removal)
      expect(seqsOf(v.store, p.id)).toEqual([1, 2, 3])
      // Nothing of the member past its last valid seq is recorded as done: not processed, not quarantined.
      expect(v.store.producers.get(p.id)?.processed_seq).toBe(3)
      expect(v.store.db.all('SELECT path FROM quarantine WHERE producer = ?', [p.id])).toEqual([])

      // Added again (the node schedules the walks membership stopped): its events written meanwhile are taken.
      removed = undefined
      const again = waitForEvent(v.events, 'sync:idle', { signal: AbortSignal.timeout(30_000) })
      v.syncer.schedule(p.id)
      await again
      expect(seqsOf(v.store, p.id)).toEqual([1, 2, 3, 4, 5, 6])
    } finally {
      await v.syncer.stop()
      v.store.close()
    }
  })
})
