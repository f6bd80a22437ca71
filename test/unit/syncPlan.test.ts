import { describe, expect, test } from 'bun:test'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import * as raw from 'multiformats/codecs/raw'
import { chunksOf, gapsIn, planFiles, refuseDay, refuseHour, SeqWindow } from '../../src/sync/plan.ts'
import { PlannedFiles } from '../../src/sync/plannedFiles.ts'

const cid = CID.create(1, raw.code, await sha256.digest(new Uint8Array([1])))
const file = (name: string, size = 100) => ({ name, cid, size })
const ID = '01890a5d-ac96-774b-bcce-b302099a8057'

describe('walk plan', () => {
  test('planFiles keeps the files in the window, refuses bad names and oversized files by link size', () => {
    const found = new SeqWindow(10, 1000)
    const refused = planFiles(
      '2024-01-01/00',
      [file(`000000000001-${ID}.json`), file(`000000000002-${ID}.json`), file(`000000000003-${ID}.json`, 5000), file('notes.txt'), file(`000000000009-${ID}.json`)],
      { processedSeq: 1, headSeq: 4, maxEventSize: 1000 },
      found
    )
    const { files } = found.finish(4)
    const rows = Array.from({ length: files.length }, (_, i) => [files.seq(i), files.oversized(i), files.path(i), files.eventId(i), files.cid(i).toString()])
    expect({ rows, refused: refused.map((r) => [r.path, r.rejection.reason, r.seq]), oversized: files.refusal(1) }).toEqual({
      rows: [
        [2, false, `2024-01-01/00/000000000002-${ID}.json`, ID, cid.toString()],
        [3, true, `2024-01-01/00/000000000003-${ID}.json`, ID, cid.toString()]
      ],
      refused: [['2024-01-01/00/notes.txt', 'name_mismatch', undefined]],
      oversized: { path: `2024-01-01/00/000000000003-${ID}.json`, cid: cid.toString(), rejection: { reason: 'oversized', detail: '5000 bytes is over the limit of 1000' }, seq: 3 }
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

  test('chunksOf always yields one chunk, and puts each oversized row in the chunk of its seq', () => {
    const table = (rows: Array<[number, number] | [number, number, 'oversized']>): PlannedFiles => {
      const t = new PlannedFiles(1000)
      for (const [seq, size, over] of rows) t.push('2024-01-01/00', seq, ID, cid.bytes, size, over != null)
      return t
    }
    const seqsOf = (t: PlannedFiles, chunks: Array<[number, number]>) => chunks.map(([from, to]) => Array.from({ length: to - from }, (_, i) => t.seq(from + i)))
    expect(chunksOf(table([]), 10)).toEqual([[0, 0]])
    const three = table([
      [1, 100],
      [2, 100],
      [3, 100]
    ])
    expect(seqsOf(three, chunksOf(three, 2))).toEqual([[1, 2], [3]])
    // 250 bytes a chunk: two files of 100, then one of 300 alone (a file over the budget still goes, alone)
    const sized = table([
      [1, 100],
      [2, 100],
      [3, 300],
      [4, 100],
      [5, 100],
      [6, 100]
    ])
    expect(seqsOf(sized, chunksOf(sized, 10, 250))).toEqual([[1, 2], [3], [4, 5], [6]])
    // oversized rows count for neither bound: each goes with the chunk after the last file before it
    const mixed = table([
      [1, 5000, 'oversized'],
      [2, 100],
      [3, 100],
      [4, 5000, 'oversized'],
      [5, 100],
      [6, 5000, 'oversized']
    ])
    expect(seqsOf(mixed, chunksOf(mixed, 2, 250))).toEqual([
      [1, 2, 3],
      [4, 5, 6]
    ])
    const onlyOversized = table([[7, 5000, 'oversized']])
    expect(seqsOf(onlyOversized, chunksOf(onlyOversized, 2))).toEqual([[7]])
  })
})
