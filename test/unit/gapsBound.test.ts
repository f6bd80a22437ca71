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

describe("a producer's gaps", () => {
  test('past the rows kept, widen its last gap of their kind: heads that skip seqs cannot grow the table without end', async () => {
    const store = await memoryStore()
    const keep = 4
    // Every other seq missing, a walk at a time, as heads that each skip one seq leave them.
    const reached: boolean[] = []
    for (let seq = 2; seq <= 20; seq += 2) {
      const r = store.gaps.record('hostile', [[seq, seq, 'lost']], 1, keep)
      reached.push(r.reached)
      expect(r.widened).toBe(seq / 2 > keep ? 1 : 0)
    }
    // The walk that filled the rows kept says so, once.
    expect(reached.indexOf(true)).toBe(keep - 1)
    expect(reached.filter(Boolean)).toHaveLength(1)
    expect(rowsOf(store, 'hostile')).toEqual([
      [2, 2, 'lost'],
      [4, 4, 'lost'],
      [6, 6, 'lost'],
      [8, 20, 'lost']
    ])
    // A kind it had no row of gets one; the next of that kind widens it.
    const compacted: Array<[number, number, GapKind]> = [
      [22, 23, 'compacted'],
      [25, 25, 'compacted']
    ]
    expect(store.gaps.record('hostile', compacted, 1, keep)).toEqual({ widened: 2, reached: false })
    expect(rowsOf(store, 'hostile').slice(4)).toEqual([[22, 25, 'compacted']])
    // Another producer's gaps are its own.
    expect(store.gaps.record('honest', [[3, 9, 'lost']], 1, keep)).toEqual({ widened: 0, reached: false })
    expect(rowsOf(store, 'honest')).toEqual([[3, 9, 'lost']])
  })

  test(`are kept as rows up to ${GAPS_KEEP} by default`, async () => {
    const store = await memoryStore()
    const gaps = Array.from({ length: GAPS_KEEP + 10 }, (_, i): [number, number, GapKind] => [2 * i + 2, 2 * i + 2, 'lost'])
    store.transaction(() => {
      expect(store.gaps.record('hostile', gaps, 1)).toEqual({ widened: 10, reached: true })
    })
    expect(store.gaps.list('lost')).toHaveLength(GAPS_KEEP)
    expect(store.gaps.list('lost').at(-1)).toMatchObject({ from_seq: 2 * GAPS_KEEP, to_seq: 2 * (GAPS_KEEP + 10) })
  })
})
