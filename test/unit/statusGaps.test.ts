import { describe, expect, test } from 'bun:test'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { Store } from '../../src/store/store.ts'
import { STATUS_GAPS_PER_PRODUCER, statusDocument, storedStatus, type LiveStatus } from '../../src/node/status.ts'

describe('status with many gaps', () => {
  test("lists each producer's first lost gaps, counts them all, and leaves out those a snapshot covers", async () => {
    const db = await openDatabase(':memory:')
    migrate(db)
    const store = new Store(db)
    for (const p of ['hostile', 'honest']) db.run('INSERT INTO producers (producer) VALUES (?)', [p])
    // A member that skips every other seq: a lost gap per event.
    store.transaction(() => {
      for (let seq = 2; seq <= 10_000; seq += 2) store.gaps.add('hostile', seq, seq, 1, 'lost')
    })
    store.gaps.add('honest', 40, 49, 1, 'lost')
    store.gaps.add('honest', 1, 9, 1, 'horizon')
    store.gaps.add('honest', 12, 14, 1, 'compacted')
    store.gaps.add('honest', 20, 21, 1, 'compacted')

    const s = storedStatus(store)
    expect(s.gaps_total).toBe(5001)
    expect(s.producers.map((p) => [p.producer, p.lost_gaps]).sort()).toEqual([
      ['honest', 1],
      ['hostile', 5000]
    ])
    // every producer with lost gaps is listed, none beyond its first few
    expect(s.gaps.filter((g) => g.producer === 'hostile').map((g) => g.from_seq)).toEqual(Array.from({ length: STATUS_GAPS_PER_PRODUCER }, (_, i) => 2 + 2 * i))
    expect(s.gaps.filter((g) => g.producer === 'honest').map((g) => [g.from_seq, g.to_seq])).toEqual([[40, 49]])
    expect(s.history).toEqual([{ producer: 'honest', history_from_seq: 10, compacted_seqs: 5 }])

    // A loaded snapshot covering the hostile producer to seq 9,000 takes those gaps out of the alarm.
    const covered = storedStatus(store, Date.now(), (p) => (p === 'hostile' ? 9000 : 0))
    expect(covered.gaps_total).toBe(501)
    expect(covered.gaps.filter((g) => g.producer === 'hostile')[0].from_seq).toBe(9002)

    const live = {
      ready: { ready: true },
      lagAlert: 500,
      clock: { producers_ahead: [] },
      pluginStates: [],
      members: { removed: [], members: [], source: 'none' },
      peerId: 'me'
    } as unknown as LiveStatus
    expect(statusDocument(live, s).reasons).toContain('5001 gap(s): events no longer fetchable')
  })
})
