import { describe, expect, test } from 'bun:test'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { Store } from '../../src/store/store.ts'
import { recordedGaps, STATUS_GAPS_PER_PRODUCER, statusDocument, storedStatus, type LiveStatus } from '../../src/node/status.ts'

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
      loadedPlugins: [],
      members: { removed: [], members: [], source: 'none' },
      refusedBy: [],
      peerId: 'me'
    } as unknown as LiveStatus
    expect(statusDocument(live, s).reasons).toContain('5001 gap(s): events no longer fetchable')
  })

  test('gives what filtering every lost gap by the coverage gave: the same gaps in the same order, each producer cut at its first few', async () => {
    const db = await openDatabase(':memory:')
    migrate(db)
    const store = new Store(db)
    const producers = ['a', 'b', 'c', 'd']
    for (const p of producers) db.run('INSERT INTO producers (producer) VALUES (?)', [p])
    let x = 7
    const next = (n: number): number => {
      x = (x * 1103515245 + 12345) % 2147483648
      return Math.floor(x / 65536) % n
    }
    const kinds = ['lost', 'lost', 'horizon', 'compacted'] as const
    store.transaction(() => {
      for (const p of producers) {
        let seq = 1
        for (let i = 0; i < (p === 'd' ? 0 : 80 + next(40)); i++) {
          const to = seq + next(3)
          store.gaps.add(p, seq, to, 1000 + i, kinds[next(4)])
          seq = to + 2 + next(3)
        }
      }
    })
    // a covers part of its gaps, b all of them, c none, d has none
    const coverage: Record<string, number> = { a: 40, b: 1_000_000 }
    const covered = (p: string): number => coverage[p] ?? 0
    const s = storedStatus(store, Date.now(), covered)
    const old = recordedGaps(store, 'lost').filter((g) => g.to_seq > covered(g.producer))
    expect(s.gaps_total).toBe(old.length)
    const firstOf = producers.flatMap((p) => old.filter((g) => g.producer === p).slice(0, STATUS_GAPS_PER_PRODUCER))
    expect(s.gaps).toEqual(firstOf)
    expect(s.producers.map((p) => p.lost_gaps)).toEqual(producers.map((p) => old.filter((g) => g.producer === p).length))
    expect(s.producers.find((p) => p.producer === 'b')?.lost_gaps).toBe(0)
    // the cut and the coverage both bite here
    expect(old.filter((g) => g.producer === 'a').length).toBeGreaterThan(STATUS_GAPS_PER_PRODUCER)
    expect(recordedGaps(store, 'lost').filter((g) => g.producer === 'a').length).toBeGreaterThan(s.producers[0].lost_gaps)

    // history: per producer with a harmless kind, by producer, where history starts and what compaction removed
    const history = new Map<string, { producer: string; history_from_seq: number; compacted_seqs: number }>()
    for (const g of recordedGaps(store)) {
      if (g.kind === 'lost') continue
      const h = history.get(g.producer) ?? { producer: g.producer, history_from_seq: 1, compacted_seqs: 0 }
      if (g.kind === 'horizon') h.history_from_seq = Math.max(h.history_from_seq, g.to_seq + 1)
      else h.compacted_seqs += g.to_seq - g.from_seq + 1
      history.set(g.producer, h)
    }
    expect(s.history).toEqual([...history.values()])
    expect(s.history.length).toBe(3)
  })
})
