import { describe, expect, test } from 'bun:test'
import { membersTime, prunable } from '../../src/housekeeping/prune.ts'
import { classifyGap } from '../../src/sync/plan.ts'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { Store } from '../../src/store/store.ts'
import { memoryOutbox } from '../helpers/outbox.ts'

const MIN = 60_000
const HOUR = 3_600_000
const LAGGING = '12D3KooWC3333333333333333333333333333333333333333333'
const HOSTILE = '12D3KooWD4444444444444444444444444444444444444444444'
const HONEST = '12D3KooWB2222222222222222222222222222222222222222222'

describe("a member's event that writes the keys of an honest node's event", () => {
  test('lets the honest node compact its own event after retention, though a lagging member never acknowledged it', async () => {
    const { self, outbox, store } = await memoryOutbox()
    try {
      await outbox.publish({ type: 'test.keyed', payload: {} })
      const t0 = Date.now()
      store.db.run('UPDATE outbox SET created_at = ?', [t0])
      // The lagging member is live (a head received now) and acknowledged none of this node's events.
      store.producers.putHead({ producer: LAGGING, seq: 1, root: 'bafy', hlc: `${t0}-0000`, acks: { [self]: 0 }, signed: new Uint8Array([1]), receivedAt: t0 })
      // The hostile member's event writes key k, stamped later: this node's seq 1 is superseded.
      store.stateKeys.record('p', self, 1, `${t0}-0000`, ['k'])
      store.stateKeys.record('p', HOSTILE, 1, `${t0 + 1}-0000`, ['k'])
      const rules = { self, retention: 10 * MIN, retentionMax: 7 * 24 * HOUR, members: () => [LAGGING, HOSTILE], processed: () => Number.MAX_SAFE_INTEGER }
      const at = t0 + 11 * MIN
      // Eleven minutes on, far from retention-max (7 d) and unacknowledged by the lagging member: it goes.
      const r = prunable(store, rules, { wall: at, guarded: at })
      expect(r.seqs).toEqual([1])
      expect([...r.compacted]).toEqual([1])
      // Without the hostile member's event it stays: the newest event of its key.
      store.db.run('DELETE FROM state_keys WHERE producer = ?', [HOSTILE])
      expect(prunable(store, rules, { wall: at, guarded: at }).seqs).toEqual([])
    } finally {
      await outbox.stop()
    }
  })
})

describe("a member's own events missing from its tree", () => {
  test('are recorded as compacted, not lost, when its head says it prunes plainly below them: the reader sees no alarm', () => {
    // Seq 5 gone from a tree whose head says pruned_plain 0 (nothing pruned plainly): compacted, whether or not any
    // newer event superseded it. A member withholding it (or the event that superseded an honest node's) is not seen.
    expect(classifyGap(5, 5, 0, 0)).toEqual([[5, 5, 'compacted']])
    expect(classifyGap(5, 5, 0, null)).toEqual([[5, 5, 'lost']])
  })
})

describe('the time members show the guarded clock, without a members list', () => {
  test('comes from any two producers: a key holder mints the second one it takes against a clock set ahead', async () => {
    const db = await openDatabase(':memory:')
    migrate(db)
    const store = new Store(db)
    const self = '12D3KooWA1111111111111111111111111111111111111111111'
    const at = Date.now() + 2 * HOUR
    // Two identities of one key holder, stamped at a wall clock set two hours ahead (their heads are within its skew).
    for (const p of [LAGGING, HOSTILE]) store.producers.putHead({ producer: p, seq: 1, root: 'bafy', hlc: `${at}-0000`, acks: {}, signed: new Uint8Array([1]), receivedAt: at })
    expect(membersTime(store, { self, members: () => undefined })).toBe(at)
    // With a members list naming one of them and an honest member heard from at the true time, they show no more than it.
    store.producers.putHead({ producer: HONEST, seq: 1, root: 'bafy', hlc: `${Date.now()}-0000`, acks: {}, signed: new Uint8Array([1]), receivedAt: Date.now() })
    expect(membersTime(store, { self, members: () => [HOSTILE, HONEST] })).toBeLessThan(at - HOUR)
  })
})
