import { describe, expect, test } from 'bun:test'
import fc from 'fast-check'
import { signHead, withBlocks } from '../../src/model/head.ts'
import { HybridClock } from '../../src/model/hlc.ts'
import { Metrics } from '../../src/metrics/metrics.ts'
import { CairnEventBus } from '../../src/node/events.ts'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { Store } from '../../src/store/store.ts'
import { intakeHead } from '../../src/sync/headIntake.ts'
import { mintProducer, randomBlock } from './helpers.ts'

/** Scale: CI-sized by default; FAULTS_SCALE=10 for the on-demand run (see RELIABILITY.md). */
const SCALE = Number(process.env.FAULTS_SCALE ?? 1)

/** One message of a hint stream: which of the producer's heads, and what it carries. */
type Hint = { seq: number; carry: 'none' | 'small' | 'over'; by: 'member' | 'outsider' | 'garbage' }

describe('a stream of hints, honest, replayed and crafted', () => {
  test('keeps in memory only what a member head ahead of the processed one carried (new, or late: out of order), never an old or refused head’s blocks, and ends at the newest head', async () => {
    const member = await mintProducer()
    const outsider = await mintProducer()
    const base = Date.now()
    const hint = fc.record<Hint>({
      seq: fc.integer({ min: 1, max: 12 }),
      carry: fc.constantFrom('none', 'small', 'over'),
      by: fc.constantFrom('member', 'member', 'outsider', 'garbage')
    })
    await fc.assert(
      fc.asyncProperty(fc.array(hint, { minLength: 1, maxLength: 30 }), async (stream) => {
        const db = await openDatabase(':memory:')
        migrate(db)
        const store = new Store(db)
        const kept: string[] = []
        const offered: string[] = []
        const components = { self: 'victim', store, clock: new HybridClock(), metrics: new Metrics(), events: new CairnEventBus() }
        const init = {
          isMember: (p: string) => p === member.id,
          keepBlocks: (blocks: Array<{ cid: { toString: () => string } }>) => kept.push(...blocks.map((b) => b.cid.toString())),
          offerBlocks: (blocks: Array<{ cid: { toString: () => string } }>) => offered.push(...blocks.map((b) => b.cid.toString()))
        }
        // The member's events up to PROCESSED are in already: heads up to it are old whatever they carry.
        const PROCESSED = 3
        const seed = await signHead({ producer: member.id, seq: PROCESSED, root: 'bafkqaaa', hlc: `${base + PROCESSED}-0000`, acks: {} }, member.key)
        store.producers.putHead(
          { producer: member.id, seq: PROCESSED, root: 'bafkqaaa', hlc: `${base + PROCESSED}-0000`, acks: {}, signed: seed, receivedAt: base },
          { root: 'bafkqaaa', processedSeq: PROCESSED }
        )
        const carriedByNew: string[] = []
        const carriedByLate: string[] = []
        let newest = PROCESSED
        for (const h of stream) {
          const signer = h.by === 'outsider' ? outsider : member
          // Heads of one seq always carry the same hlc: a replay is exactly the producer's head again.
          const head = await signHead({ producer: signer.id, seq: h.seq, root: 'bafkqaaa', hlc: `${base + h.seq}-0000`, acks: {} }, signer.key)
          const blocks = h.carry === 'none' ? [] : [await randomBlock(h.carry === 'small' ? 1024 : 100 * 1024)]
          const bytes = h.by === 'garbage' ? new TextEncoder().encode('{"head":{}}') : withBlocks(head, blocks)
          let accepted = false
          try {
            accepted = (await intakeHead(bytes, init, components)) != null
          } catch (err) {
            expect((err as Error).name).toBe('InvalidHeadError')
          }
          if (accepted) {
            expect(h.by === 'member' && h.seq > newest && h.carry !== 'over').toBe(true)
            newest = h.seq
            carriedByNew.push(...blocks.map((b) => b.cid.toString()))
          } else if (h.by === 'member' && h.carry !== 'over' && h.seq > PROCESSED && h.seq < newest) {
            carriedByLate.push(...blocks.map((b) => b.cid.toString()))
          }
        }
        // Kept blocks came only with member heads ahead of the processed one, within the budget; every
        // late head's blocks were kept (the walk to the newer head reads that commit's files).
        expect(kept.every((c) => carriedByNew.includes(c) || carriedByLate.includes(c))).toBe(true)
        expect(carriedByLate.every((c) => kept.includes(c))).toBe(true)
        expect(offered.every((c) => !kept.includes(c))).toBe(true)
        expect(store.producers.get(member.id)?.head_seq ?? 0).toBe(newest)
        expect(store.producers.get(outsider.id)).toBeUndefined()
        store.close()
      }),
      { numRuns: 20 * SCALE }
    )
  })
})
