import { expect, test } from 'bun:test'
import type { CID } from 'multiformats/cid'
import type { Head } from '../../src/model/head.ts'
import { fileName } from '../../src/model/layout.ts'
import { ForkCheck, type ForkCheckComponents } from '../../src/sync/forkCheck.ts'
import { directoryBlock, fileBlockSync, type DirEntry } from '../../src/unixfs/tree.ts'

const uuid7 = (i: number): string => `0190a000-0000-7000-8000-${i.toString(16).padStart(12, '0')}`
const file = (seq: number, copy: number): DirEntry => {
  const block = fileBlockSync(new TextEncoder().encode(`event ${seq} of copy ${copy}`))
  return { name: fileName(seq, uuid7(seq * 10 + copy)), cid: block.cid, size: block.bytes.length }
}

/** a one-hour outbox tree holding `files`: its root and every block */
async function tree(bucket: string, files: DirEntry[]): Promise<{ root: CID; blocks: Map<string, Uint8Array> }> {
  const blocks = new Map<string, Uint8Array>()
  const hour = await directoryBlock(files)
  const day = await directoryBlock([{ name: bucket.slice(11), cid: hour.cid, size: hour.size }])
  const root = await directoryBlock([{ name: bucket.slice(0, 10), cid: day.cid, size: day.size }])
  for (const b of [hour, day, root]) blocks.set(b.cid.toString(), b.bytes)
  return { root: root.cid, blocks }
}

// This node's identity runs on a copy too (a restored backup): the copy's head at seq 5 holds another file there,
// and is pushed to this node now and then (on a change, or every minute). A member relays this node's own older
// heads, which every peer kept (gossip carried them, and only this node's key could sign them), of roots whose
// directory blocks nobody holds any more (collected after later commits): each takes the one check that runs at a
// time for the whole fetch timeout (bitswap wants the block until then), and a head offered meanwhile is dropped.
// One such replay per fetch timeout, at a rate far under the head limiter's, and the copy is never found out.
// (The supply does not run out: each root is tried three times, and forgotten after 1,024 others.)
test("replays of this node's own older heads whose blocks are gone do not keep a copy's forked head from its check", async () => {
  const own = file(5, 0)
  const copy = await tree('2026-11-30/09', [file(4, 0), file(5, 1)])
  const results: string[] = []
  const dispatched: unknown[] = []
  const components = {
    store: {
      outbox: {
        lastSeq: () => 10,
        root: () => 'bafycurrent',
        hasSigned: () => false,
        atSeq: (seq: number) => ({ bucket: '2026-11-30/08', name: seq === 5 ? own.name : file(seq, 0).name, cid: seq === 5 ? own.cid.toString() : file(seq, 0).cid.toString() })
      }
    },
    events: { safeDispatchEvent: (_type: string, e: { detail: unknown }) => dispatched.push(e.detail) },
    log: { debug: () => {} },
    metrics: { ownHeadsChecked: { inc: (l: { result: string }) => results.push(l.result) } }
  } as unknown as ForkCheckComponents
  const fetchTimeoutMs = 1000
  const check = new ForkCheck(
    {
      // A block no peer holds is wanted until the signal ends the fetch (--fetch-timeout).
      getBlock: async (cid, signal) => {
        const b = copy.blocks.get(cid.toString())
        if (b != null) return b
        return await new Promise<Uint8Array>((_, reject) => {
          signal.addEventListener('abort', () => reject(new Error('no peer has it')), { once: true })
        })
      },
      timeoutMs: fetchTimeoutMs
    },
    components
  )
  const head = (seq: number, root: string, at: number): Head => ({ producer: 'self', seq, root, hlc: `${at}-0000`, acks: {} }) as unknown as Head
  // The member's replays: one every 10 ms (the head limiter lets 200 a second of one producer through from a peer),
  // each of another old root, signed before the copy's head (one signed later is of a root among the last this
  // node signed, which is not checked: the second test), at a seq above the copy's.
  const gone = await Promise.all(Array.from({ length: 1500 }, async (_, i) => (await directoryBlock([{ name: `old ${i}`, cid: own.cid, size: 1 }])).cid.toString()))
  const signedAt = 1764490000000
  let stale = 0
  const replays = setInterval(() => check.offer(head(9, gone[stale % gone.length], signedAt - 1000 + (stale++ % 1000)), []), 10)
  // The copy's head comes every second (far more often than a real copy's pushes: on a change, or once a minute).
  let pushes: ReturnType<typeof setInterval> | undefined
  const first = setTimeout(() => {
    check.offer(head(5, copy.root.toString(), signedAt), [])
    pushes = setInterval(() => check.offer(head(5, copy.root.toString(), signedAt), []), 1000)
  }, 500)
  try {
    const until = Date.now() + 8 * fetchTimeoutMs
    while (Date.now() < until && !results.includes('forked')) await Bun.sleep(50)
  } finally {
    clearInterval(replays)
    clearTimeout(first)
    clearInterval(pushes)
    await check.stop()
  }
  expect(results).toContain('forked')
  expect(dispatched).toHaveLength(1)
}, 30_000)

test('heads of the roots this node signed lately are not checked, whenever they were signed: replaying them costs no check', async () => {
  const results: string[] = []
  let fetched = 0
  const roots = await Promise.all(Array.from({ length: 3 }, async (_, i) => (await directoryBlock([{ name: `commit ${i}`, cid: file(i, 0).cid, size: 1 }])).cid.toString()))
  const signed = new Set(roots.slice(0, 2))
  const components = {
    store: { outbox: { lastSeq: () => 10, root: () => 'bafycurrent', hasSigned: (root: string) => signed.has(root), atSeq: () => ({ bucket: '2026-11-30/08', name: 'x', cid: 'y' }) } },
    events: { safeDispatchEvent: () => {} },
    log: { debug: () => {} },
    metrics: { ownHeadsChecked: { inc: (l: { result: string }) => results.push(l.result) } }
  } as unknown as ForkCheckComponents
  const getBlock = async (): Promise<Uint8Array> => {
    fetched++
    throw new Error('no peer has it')
  }
  const check = new ForkCheck({ getBlock, timeoutMs: 1000 }, components)
  const offer = (seq: number, root: string): void => check.offer({ producer: 'self', seq, root, hlc: '1764490000000-0000', acks: {} } as unknown as Head, [])
  offer(1, roots[0])
  offer(2, roots[1])
  expect(fetched).toBe(0)
  // A root it did not sign lately is checked (here: no verdict, its blocks cannot be had).
  offer(3, roots[2])
  while (results.length === 0) await Bun.sleep(10)
  await check.stop()
  expect(fetched).toBe(1)
  expect(results).toEqual(['no_verdict'])
})

// A copy's head arrives several times for one publish (its hint, its push, pushes of other peers): offers of the
// root under check are dropped, not queued, so a root whose blocks are briefly missing keeps its later attempts
// for offers that come after that check.
test('offers of the root under check do not spend its attempts back to back', async () => {
  const own = file(5, 0)
  const copy = await tree('2026-11-30/09', [file(4, 0), file(5, 1)])
  const results: string[] = []
  const components = {
    store: { outbox: { lastSeq: () => 10, root: () => 'bafycurrent', hasSigned: () => false, atSeq: () => ({ bucket: '2026-11-30/08', name: own.name, cid: own.cid.toString() }) } },
    events: { safeDispatchEvent: () => {} },
    log: { debug: () => {} },
    metrics: { ownHeadsChecked: { inc: (l: { result: string }) => results.push(l.result) } }
  } as unknown as ForkCheckComponents
  let available = false
  const check = new ForkCheck(
    {
      getBlock: async (cid: CID, signal: AbortSignal) => {
        if (available) return copy.blocks.get(cid.toString())!
        return await new Promise<Uint8Array>((_, reject) => signal.addEventListener('abort', () => reject(new Error('no peer has it')), { once: true }))
      },
      timeoutMs: 300
    },
    components
  )
  const head = { producer: 'self', seq: 5, root: copy.root.toString(), hlc: '1764490000000-0000', acks: {} } as unknown as Head
  try {
    // The first check waits on blocks nobody has; the same head comes twice more meanwhile.
    check.offer(head, [])
    check.offer(head, [])
    check.offer(head, [])
    while (results.length === 0) await Bun.sleep(20)
    expect(results).toEqual(['no_verdict'])
    // The blocks are back, and so is the head.
    available = true
    check.offer(head, [])
    while (results.length < 2) await Bun.sleep(20)
    expect(results).toEqual(['no_verdict', 'forked'])
  } finally {
    await check.stop()
  }
}, 30_000)
