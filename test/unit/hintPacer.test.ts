import { describe, expect, test } from 'bun:test'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { HINT_MAX_BYTES } from '../../src/model/head.ts'
import { HintPacer } from '../../src/p2p/hintPacer.ts'
import { waitFor } from '../helpers/process.ts'

interface Block {
  cid: CID
  bytes: Uint8Array
}

async function block(size: number): Promise<Block> {
  const bytes = crypto.getRandomValues(new Uint8Array(size))
  return { cid: CID.createV1(0x55, await sha256.digest(bytes)), bytes }
}

const head = (seq: number): Uint8Array => new TextEncoder().encode(`head ${seq}`)
const text = (b: Uint8Array): string => new TextDecoder().decode(b)

function pacer(perSecond: number): { pacer: HintPacer; sent: Array<{ head: string; blocks: Block[] }> } {
  const sent: Array<{ head: string; blocks: Block[] }> = []
  return {
    sent,
    pacer: new HintPacer({
      perSecond,
      send: (signed, blocks) => {
        sent.push({ head: text(signed), blocks })
      }
    })
  }
}

describe('HintPacer', () => {
  test('a head after a quiet interval goes at once; heads within the interval wait, and one hint carries the newest and the blocks of every commit since, newest first', async () => {
    const { pacer: p, sent } = pacer(20)
    const [b1, b2, b3, b4] = await Promise.all([block(100), block(200), block(300), block(400)])
    p.push(head(1), [b1])
    expect(sent).toEqual([{ head: 'head 1', blocks: [b1] }])
    p.push(head(2), [b2])
    p.push(head(3), [b3, b2])
    p.push(head(4), [b4])
    expect(sent.length).toBe(1)
    await waitFor('the held hint', () => sent.length === 2, 2000, 5)
    expect(sent[1].head).toBe('head 4')
    // newest commit first, a block two commits share once
    expect(sent[1].blocks.map((b) => b.cid.toString())).toEqual([b4, b3, b2].map((b) => b.cid.toString()))
  })

  test('commits past the hint budget are left out, oldest first; a newest commit over it alone goes without blocks', async () => {
    const { pacer: p, sent } = pacer(1)
    const big = Math.floor(HINT_MAX_BYTES * 0.6)
    const [first, older, newer, huge] = await Promise.all([block(10), block(big), block(big), block(HINT_MAX_BYTES + 1)])
    p.push(head(1), [first])
    p.push(head(2), [older])
    p.push(head(3), [newer])
    p.flush()
    expect(sent.map((s) => [s.head, s.blocks.length])).toEqual([
      ['head 1', 1],
      ['head 3', 1]
    ])
    expect(sent[1].blocks[0].cid.equals(newer.cid)).toBe(true)
    p.push(head(4), [huge])
    p.flush()
    expect(sent[2]).toEqual({ head: 'head 4', blocks: [] })
  })

  test('flush sends a held hint at once and nothing when none is held', async () => {
    const { pacer: p, sent } = pacer(1)
    p.flush()
    expect(sent).toEqual([])
    p.push(head(1), [])
    p.push(head(2), [])
    expect(sent.length).toBe(1)
    p.flush()
    p.flush()
    expect(sent.map((s) => s.head)).toEqual(['head 1', 'head 2'])
  })
})
