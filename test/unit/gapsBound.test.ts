import { describe, expect, test } from 'bun:test'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { GAPS_KEEP, type GapKind } from '../../src/store/gaps.ts'
import { migrate } from '../../src/store/migrations.ts'
import { Store } from '../../src/store/store.ts'

/** @returns a store over a fresh in-memory database */
async function memoryStore(): Promise<Store> {
  const db = await openDatabase(':memory:')
  migrate(db)
  return new Store(db)
}

const rowsOf = (store: Store, producer: string): Array<[number, number, string]> =>
  store.gaps
    .list()
    .filter((g) => g.producer === producer)
    .map((g) => [g.from_seq, g.to_seq, g.kind])

/** `n` single-seq gaps of `kind`, every other seq from `from` */
const every2 = (from: number, n: number, kind: GapKind): Array<[number, number, GapKind]> => Array.from({ length: n }, (_, i) => [from + 2 * i, from + 2 * i, kind])

describe("a producer's gaps", () => {
  test('past the rows kept, widen its last gap of their kind: heads that skip seqs cannot grow the table without end', async () => {
    const store = await memoryStore()
    const keep = 4
    // Every other seq missing, a walk at a time, as heads that each skip one seq leave them.
    const first: boolean[] = []
    for (let seq = 2; seq <= 20; seq += 2) {
      const r = store.gaps.record('hostile', [[seq, seq, 'lost']], 1, keep)
      first.push(r.first)
      expect([...r.widened]).toEqual(seq / 2 > keep ? [0] : [])
    }
    // The first widening says so, once.
    expect(first.indexOf(true)).toBe(keep)
    expect(first.filter(Boolean)).toHaveLength(1)
    expect(rowsOf(store, 'hostile')).toEqual([
      [2, 2, 'lost'],
      [4, 4, 'lost'],
      [6, 6, 'lost'],
      [8, 20, 'lost']
    ])
    // A kind it had no row of gets one, counted as a gap of its own; the next of that kind widens it.
    const compacted: Array<[number, number, GapKind]> = [
      [22, 23, 'compacted'],
      [25, 25, 'compacted']
    ]
    expect([...store.gaps.record('hostile', compacted, 1, keep).widened]).toEqual([1])
    expect(rowsOf(store, 'hostile').slice(4)).toEqual([[22, 25, 'compacted']])
    // Another producer's gaps are its own.
    expect(store.gaps.record('honest', [[3, 9, 'lost']], 1, keep).widened.size).toBe(0)
    expect(rowsOf(store, 'honest')).toEqual([[3, 9, 'lost']])
  })

  test('past the rows kept, a lost gap with no lost row before it gets a row of its own (ingest warns of it), not a widening', async () => {
    const store = await memoryStore()
    // A history compacted before this node joined: a horizon gap per hole fills the rows kept.
    store.gaps.record('p', every2(2, 4, 'horizon'), 1, 4)
    const r = store.gaps.record('p', [[100, 100, 'lost']], 1, 4)
    expect(r.widened.size).toBe(0)
    expect(store.gaps.lostAfter('p', 0, 10).count).toBe(1)
  })

  test('a widened compacted gap counts the seqs compacted, not the seqs it spans', async () => {
    const store = await memoryStore()
    // Compacted seqs 2, 4, 6, 8, 10, 12 and a lost one at 9, past 4 rows kept: 8..12 is one compacted row then.
    store.gaps.record('p', every2(2, 4, 'compacted'), 1, 4)
    store.gaps.record(
      'p',
      [
        [9, 9, 'lost'],
        [10, 10, 'compacted'],
        [12, 12, 'compacted']
      ],
      1,
      4
    )
    expect(store.gaps.list('lost')).toHaveLength(1)
    expect(store.gaps.covered()).toEqual([{ producer: 'p', horizon: 0, compacted: 6 }])
  })

  test('the last gap of a kind is found through an index, whatever rows of other kinds come after it', async () => {
    const store = await memoryStore()
    const plan = store.db.all<{ detail: string }>('EXPLAIN QUERY PLAN SELECT max(from_seq) FROM gaps WHERE producer = ? AND kind = ? AND from_seq <= ?', ['p', 'lost', 9])
    expect(plan.map((r) => r.detail).join('; ')).toContain('USING COVERING INDEX gaps_kind')
  })

  test(`are kept as rows up to ${GAPS_KEEP} by default`, async () => {
    const store = await memoryStore()
    store.transaction(() => {
      expect(store.gaps.record('hostile', every2(2, GAPS_KEEP + 10, 'lost'), 1).widened.size).toBe(10)
    })
    expect(store.gaps.list('lost')).toHaveLength(GAPS_KEEP)
    expect(store.gaps.list('lost').at(-1)).toMatchObject({ from_seq: 2 * GAPS_KEEP, to_seq: 2 * (GAPS_KEEP + 10) })
  })
})
