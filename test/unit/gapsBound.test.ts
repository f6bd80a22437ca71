import { describe, expect, test } from 'bun:test'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { gapRangeText, recordedGaps } from '../../src/node/status.ts'
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
    for (let seq = 2; seq <= 20; seq += 2) expect([...store.gaps.record('hostile', [[seq, seq, 'lost']], 1, keep)]).toEqual(seq / 2 > keep ? [0] : [])
    // The first widening of a kind since the start is said once.
    expect([store.gaps.firstWidening('hostile', 'lost'), store.gaps.firstWidening('hostile', 'lost'), store.gaps.firstWidening('hostile', 'compacted')]).toEqual([true, false, true])
    expect(rowsOf(store, 'hostile')).toEqual([
      [2, 2, 'lost'],
      [4, 4, 'lost'],
      [6, 6, 'lost'],
      [8, 20, 'lost']
    ])
    // The rows are kept per kind: compacted gaps get rows of their own up to `keep`.
    expect(store.gaps.record('hostile', every2(22, keep + 1, 'compacted'), 1, keep)).toEqual(new Set([keep]))
    expect(rowsOf(store, 'hostile').slice(4)).toEqual([
      [22, 22, 'compacted'],
      [24, 24, 'compacted'],
      [26, 26, 'compacted'],
      [28, 30, 'compacted']
    ])
    // Another producer's gaps are its own.
    expect(store.gaps.record('honest', [[3, 9, 'lost']], 1, keep).size).toBe(0)
    expect(rowsOf(store, 'honest')).toEqual([[3, 9, 'lost']])
  })

  test("past the rows kept of another kind, lost gaps get rows of their own (ingest warns of each): a history compacted before this node joined does not mute its producer's losses", async () => {
    const store = await memoryStore()
    // A horizon gap per hole fills the rows kept of that kind.
    store.gaps.record('p', every2(2, 4, 'horizon'), 1, 4)
    expect(store.gaps.record('p', every2(100, 3, 'lost'), 1, 4).size).toBe(0)
    expect(store.gaps.lostAfter('p', 0, 10).count).toBe(3)
  })

  test('a widened gap counts each missing seq once, and cairn gaps says how many of the range are missing', async () => {
    const store = await memoryStore()
    store.gaps.record('p', every2(2, 2, 'lost'), 1, 2)
    // 4..4 widened by 6..8, then by 7..10 (overlapping what it holds) and 12..12: 4, 6, 7, 8, 9, 10 and 12.
    for (const g of [
      [6, 8],
      [7, 10],
      [12, 12]
    ] as const)
      store.gaps.record('p', [[g[0], g[1], 'lost']], 1, 2)
    expect(store.gaps.list('lost').map((g) => [g.from_seq, g.to_seq, g.missing])).toEqual([
      [2, 2, 1],
      [4, 12, 7]
    ])
    // As status and the console show them.
    expect(recordedGaps(store).map(gapRangeText)).toEqual(['2..2', '4..12 (7 missing)'])
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
      expect(store.gaps.record('hostile', every2(2, GAPS_KEEP + 10, 'lost'), 1).size).toBe(10)
    })
    expect(store.gaps.list('lost')).toHaveLength(GAPS_KEEP)
    expect(store.gaps.list('lost').at(-1)).toMatchObject({ from_seq: 2 * GAPS_KEEP, to_seq: 2 * (GAPS_KEEP + 10) })
  })

  test("counts a producer's rows of a kind once per walk's chunk, however many of its gaps widen", async () => {
    const store = await memoryStore()
    store.gaps.record('p', every2(2, 4, 'lost'), 1, 4)
    const get = store.db.get.bind(store.db)
    let counts = 0
    store.db.get = ((sql: string, params?: unknown[]) => {
      if (sql.includes('count(*)')) counts++
      return get(sql, params as never)
    }) as typeof store.db.get
    expect(store.gaps.record('p', every2(20, 50, 'lost'), 1, 4).size).toBe(50)
    expect(counts).toBe(1)
  })
})
