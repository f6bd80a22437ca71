import { describe, expect, test } from 'bun:test'
import { CID } from 'multiformats/cid'
import { identity } from 'multiformats/hashes/identity'
import { sha256 } from 'multiformats/hashes/sha2'
import { HINT_MAX_BYTES } from '../../src/model/head.ts'
import { HintPacer } from '../../src/p2p/hintPacer.ts'
import { directoryBlock, fileBlock } from '../../src/unixfs/tree.ts'
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
const cids = (blocks: Block[]): string[] => blocks.map((b) => b.cid.toString())

/** A pacer on a clock the test sets (its timers are real: a due time in the clock's past fires at once). */
function pacer(init: { perSecond: number; holdMs: number; events?: number }): { p: HintPacer; sent: Array<{ head: string; blocks: Block[] }>; clock: { now: number } } {
  const sent: Array<{ head: string; blocks: Block[] }> = []
  const clock = { now: 0 }
  const p = new HintPacer({
    events: 4,
    ...init,
    now: () => clock.now,
    send: (signed, blocks) => {
      sent.push({ head: text(signed), blocks })
    }
  })
  return { p, sent, clock }
}

describe('HintPacer', () => {
  test('a commit after the hold time goes at once; sooner ones wait out the hold, and one hint carries the newest head and the blocks of every commit since, newest first', async () => {
    const { p, sent, clock } = pacer({ perSecond: 100, holdMs: 40 })
    const [b1, b2, b3, b4] = await Promise.all([block(100), block(200), block(300), block(400)])
    p.push(head(1), [b1], 1)
    expect(sent).toEqual([{ head: 'head 1', blocks: [b1] }])
    clock.now = 5
    p.push(head(2), [b2], 1)
    clock.now = 6
    p.push(head(3), [b3, b2], 1)
    clock.now = 7
    p.push(head(4), [b4], 1)
    // three events: fewer than four, so they wait for the hold time
    expect(sent.length).toBe(1)
    clock.now = 40
    await waitFor('the held hint', () => sent.length === 2, 2000, 5)
    expect(sent[1].head).toBe('head 4')
    // newest commit first, a block two commits share once
    expect(cids(sent[1].blocks)).toEqual(cids([b4, b3, b2]))
    clock.now = 80
    p.push(head(5), [], 1)
    expect(sent.map((s) => s.head)).toEqual(['head 1', 'head 4', 'head 5'])
  })

  test('a held hint covering enough events goes once 1/perSecond has passed since the last, without waiting out the hold', async () => {
    const { p, sent, clock } = pacer({ perSecond: 100, holdMs: 60_000 })
    p.push(head(1), [], 1)
    clock.now = 3
    p.push(head(2), [], 2)
    clock.now = 4
    p.push(head(3), [], 2)
    expect(sent.length).toBe(1)
    clock.now = 10
    await waitFor('the hint of four events', () => sent.length === 2, 2000, 5)
    expect(sent[1].head).toBe('head 3')
    // a commit of many events, the interval passed: at once
    clock.now = 30
    p.push(head(4), [], 100)
    expect(sent.map((s) => s.head)).toEqual(['head 1', 'head 3', 'head 4'])
    p.flush()
  })

  test('commits past the hint budget are left out, oldest first; a newest commit over it alone goes without blocks', async () => {
    const { p, sent } = pacer({ perSecond: 1, holdMs: 60_000 })
    const big = Math.floor(HINT_MAX_BYTES * 0.6)
    const [first, older, newer, huge] = await Promise.all([block(10), block(big), block(big), block(HINT_MAX_BYTES + 1)])
    p.push(head(1), [first], 1)
    p.push(head(2), [older], 1)
    p.push(head(3), [newer], 1)
    p.flush()
    expect(sent.map((s) => [s.head, s.blocks.length])).toEqual([
      ['head 1', 1],
      ['head 3', 1]
    ])
    expect(sent[1].blocks[0].cid.equals(newer.cid)).toBe(true)
    p.push(head(4), [huge], 1)
    p.flush()
    expect(sent[2]).toEqual({ head: 'head 4', blocks: [] })
  })

  test('flush sends a held hint at once and nothing when none is held', () => {
    const { p, sent } = pacer({ perSecond: 1, holdMs: 60_000 })
    p.flush()
    expect(sent).toEqual([])
    p.push(head(1), [], 1)
    p.push(head(2), [], 0)
    expect(sent.length).toBe(1)
    p.flush()
    p.flush()
    expect(sent.map((s) => s.head)).toEqual(['head 1', 'head 2'])
  })

  test("a held hint leaves out the directories of its older commits that the newest commit replaced: only what its head's root reaches", async () => {
    const { p, sent } = pacer({ perSecond: 1, holdMs: 60_000 })
    const signed = (root: CID): Uint8Array => new TextEncoder().encode(JSON.stringify({ head: { root: root.toString() }, sig: 'x' }))
    const entry = (name: string, b: Block): { name: string; cid: CID; size: number } => ({ name, cid: b.cid, size: b.bytes.length })
    const files = await Promise.all([1, 2, 3].map(async (i) => await fileBlock(new TextEncoder().encode(`event ${i}`))))
    const roots = [
      await directoryBlock([entry('1', files[0])]),
      await directoryBlock([entry('1', files[0]), entry('2', files[1])]),
      await directoryBlock([entry('1', files[0]), entry('2', files[1]), entry('3', files[2])])
    ]
    p.push(signed(roots[0].cid), [files[0], roots[0]], 1)
    p.push(signed(roots[1].cid), [files[1], roots[1]], 1)
    p.push(signed(roots[2].cid), [files[2], roots[2]], 1)
    p.flush()
    expect(sent.length).toBe(2)
    // the second commit's event file is still under the newest root; its root directory is not
    expect(cids(sent[1].blocks)).toEqual(cids([files[2], roots[2], files[1]]))
  })
  test("a held hint's walk takes CIDs shorter than the index's key and dag-pb blocks that are no directory, sends a block that commits share once, and everything when the root is not held", async () => {
    const { p, sent } = pacer({ perSecond: 1, holdMs: 60_000, events: 1000 })
    const signed = (root: CID): Uint8Array => new TextEncoder().encode(JSON.stringify({ head: { root: root.toString() }, sig: 'x' }))
    const entry = (name: string, b: Block): { name: string; cid: CID; size: number } => ({ name, cid: b.cid, size: b.bytes.length })
    // identity CIDs of 5 and 4 bytes, and a dag-pb block that does not decode
    const short = { cid: CID.createV1(0x55, identity.digest(new Uint8Array([1]))), bytes: new Uint8Array([1]) }
    const shorter = { cid: CID.createV1(0x55, identity.digest(new Uint8Array([]))), bytes: new Uint8Array([]) }
    const junkBytes = new Uint8Array([1, 2, 3, 4])
    const junk = { cid: CID.createV1(0x70, await sha256.digest(junkBytes)), bytes: junkBytes }
    const file = await fileBlock(new TextEncoder().encode('event'))
    const unreached = await block(10)
    const r1 = await directoryBlock([entry('f', file), entry('s', short), entry('j', junk)])
    const r2 = await directoryBlock([entry('f', file), entry('s', short), entry('t', shorter), entry('j', junk)])
    p.push(head(0), [], 0)
    p.push(signed(r1.cid), [file, short, junk, r1, unreached], 1)
    p.push(signed(r2.cid), [shorter, file, r2, junk], 1)
    p.flush()
    expect(cids(sent[1].blocks)).toEqual(cids([shorter, file, r2, junk, short]))
    // A root that is none of the held blocks (a head a prune re-signed): all of them, each once.
    p.push(signed(r1.cid), [file, short], 1)
    p.push(signed(r2.cid), [shorter, file], 1)
    p.flush()
    expect(cids(sent[2].blocks)).toEqual(cids([shorter, file, short]))
  })
})
