import { describe, expect, test } from 'bun:test'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import * as raw from 'multiformats/codecs/raw'
import { chunksOf, gapsIn, planFiles, refusedIn, refuseDay, refuseHour, type Candidate, type Refused } from '../../src/sync/plan.ts'

const cid = CID.create(1, raw.code, await sha256.digest(new Uint8Array([1])))
const file = (name: string, size = 100) => ({ name, cid, size })
const ID = '01890a5d-ac96-774b-bcce-b302099a8057'

describe('walk plan', () => {
  test('planFiles keeps the files in the window, refuses bad names and oversized files by link size', () => {
    const plan = planFiles(
      '2024-01-01/00',
      [file(`000000000001-${ID}.json`), file(`000000000002-${ID}.json`), file(`000000000003-${ID}.json`, 5000), file('notes.txt'), file(`000000000009-${ID}.json`)],
      { processedSeq: 1, headSeq: 4, maxEventSize: 1000 }
    )
    expect({ seqs: plan.candidates.map((c) => c.seq), refused: plan.refused.map((r) => [r.path, r.rejection.reason, r.seq]), oversized: plan.oversized }).toEqual({
      seqs: [2],
      refused: [
        [`2024-01-01/00/000000000003-${ID}.json`, 'oversized', 3],
        ['2024-01-01/00/notes.txt', 'name_mismatch', undefined]
      ],
      oversized: [3]
    })
  })

  test('refuseDay and refuseHour refuse entries that are not buckets', () => {
    expect([refuseDay(file('2024-01-01')), refuseDay(file('x'))?.rejection.reason, refuseHour('2024-01-01', file('23')), refuseHour('2024-01-01', file('24'))?.path]).toEqual([
      undefined,
      'name_mismatch',
      undefined,
      '2024-01-01/24'
    ])
  })

  test('gapsIn returns the ranges of seqs not found', () => {
    expect(gapsIn([2, 3, 6], 1, 8)).toEqual([
      [1, 1],
      [4, 5],
      [7, 8]
    ])
    expect(gapsIn([1, 2], 1, 2)).toEqual([])
    expect(gapsIn([], 5, 4)).toEqual([])
  })

  test('chunksOf always yields one chunk, and refusedIn puts each refusal in the chunk of its seq', () => {
    const c = (seq: number): Candidate => ({ seq, eventId: `e${seq}`, cid: cid.bytes, path: `p${seq}`, size: 100 })
    expect(chunksOf([], 10)).toEqual([[]])
    expect(chunksOf([c(1), c(2), c(3)], 2).map((k) => k.map((x) => x.seq))).toEqual([[1, 2], [3]])
    // 250 bytes a chunk: two files of 100, then one of 300 alone (a file over the budget still goes, alone)
    const sized = [c(1), c(2), { ...c(3), size: 300 }, c(4), c(5), c(6)]
    expect(chunksOf(sized, 10, 250).map((k) => k.map((x) => x.seq))).toEqual([[1, 2], [3], [4, 5], [6]])
    const refused: Refused[] = [
      { path: 'x', rejection: { reason: 'name_mismatch', detail: '' } },
      { path: 'a', seq: 2, rejection: { reason: 'oversized', detail: '' } },
      { path: 'b', seq: 9, rejection: { reason: 'oversized', detail: '' } }
    ]
    expect(refusedIn(refused, 0, 0, 3, false).map((r) => r.path)).toEqual(['x', 'a'])
    expect(refusedIn(refused, 1, 3, 5, true).map((r) => r.path)).toEqual(['b'])
  })
})
