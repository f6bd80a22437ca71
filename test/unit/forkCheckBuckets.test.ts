import { expect, test } from 'bun:test'
import type { CID } from 'multiformats/cid'
import type { Head } from '../../src/model/head.ts'
import { fileName } from '../../src/model/layout.ts'
import { ForkCheck, type ForkCheckComponents } from '../../src/sync/forkCheck.ts'
import { ShardedDirectory } from '../../src/unixfs/hamt.ts'
import { directoryBlock, fileBlockSync, type DirEntry } from '../../src/unixfs/tree.ts'
import { waitFor } from '../helpers/process.ts'

const uuid7 = (i: number): string => {
  const h = (n: number, w: number): string => n.toString(16).padStart(w, '0').slice(-w)
  return `${h(0x0190a000 + i, 8)}-${h(i * 7919, 4)}-7${h(i * 31, 3)}-8${h(i * 131, 3)}-${h(i * 104729, 12)}`
}
const file = (seq: number, copy: number): DirEntry => {
  const block = fileBlockSync(new TextEncoder().encode(`event ${seq} of copy ${copy}`))
  return { name: fileName(seq, uuid7(seq * 10 + copy)), cid: block.cid, size: block.bytes.length }
}

/** an outbox tree of hour buckets `{ 'yyyy-mm-dd/hh': files }`: its root, every directory block, and those on the path to `newest` */
async function tree(buckets: Record<string, DirEntry[]>, newest: string): Promise<{ root: CID; blocks: Map<string, Uint8Array>; path: Array<{ cid: CID; bytes: Uint8Array }> }> {
  const blocks = new Map<string, Uint8Array>()
  const path: Array<{ cid: CID; bytes: Uint8Array }> = []
  const days = new Map<string, DirEntry[]>()
  for (const [bucket, files] of Object.entries(buckets)) {
    const dir = new ShardedDirectory()
    dir.add(files)
    const { root, blocks: shards } = await dir.flush()
    for (const b of shards) blocks.set(b.cid.toString(), b.bytes)
    blocks.set(root.cid.toString(), root.bytes)
    if (bucket === newest) for (const b of shards) path.push({ cid: b.cid, bytes: b.bytes })
    days.set(bucket.slice(0, 10), [...(days.get(bucket.slice(0, 10)) ?? []), { name: bucket.slice(11), cid: root.cid, size: root.size }])
  }
  const top: DirEntry[] = []
  for (const [day, hours] of days) {
    const d = await directoryBlock(hours)
    blocks.set(d.cid.toString(), d.bytes)
    top.push({ name: day, cid: d.cid, size: d.size })
    if (day === newest.slice(0, 10)) path.push({ cid: d.cid, bytes: d.bytes })
  }
  const root = await directoryBlock(top)
  blocks.set(root.cid.toString(), root.bytes)
  path.push({ cid: root.cid, bytes: root.bytes })
  return { root: root.cid, blocks, path }
}

// A copy of this node's identity (a restored backup) publishes seq 1,501 an hour after this node did, into an
// hour bucket of its own; this node's seq 1,501 sits in a bucket of 2,000 files, most of them (seqs up to 1,500)
// in the copy's tree too.
test("another file at the head's seq in the copy's latest hour is found though this node's own bucket is too big to read whole", async () => {
  const ownFiles = Array.from({ length: 2000 }, (_, i) => file(i + 1, 0))
  const copyFile = file(1501, 1)
  const copy = await tree({ '2026-11-30/07': ownFiles.slice(0, 1500), '2026-11-30/08': [copyFile] }, '2026-11-30/08')
  const own = ownFiles[1500]
  const dispatched: unknown[] = []
  const results: string[] = []
  const logged: string[] = []
  const components = {
    store: {
      outbox: {
        lastSeq: () => 2000,
        root: () => 'bafyother',
        hasSigned: () => false,
        atSeq: (seq: number) => (seq === 1501 ? { bucket: '2026-11-30/07', name: own.name, cid: own.cid.toString() } : undefined)
      }
    },
    events: { safeDispatchEvent: (_type: string, e: { detail: unknown }) => dispatched.push(e.detail) },
    log: { debug: (m: string) => logged.push(m) },
    metrics: { ownHeadsChecked: { inc: (l: { result: string }) => results.push(l.result) } }
  } as unknown as ForkCheckComponents
  const check = new ForkCheck(
    {
      getBlock: async (cid) => {
        const b = copy.blocks.get(cid.toString())
        if (b == null) throw new Error('no such block')
        return b
      },
      timeoutMs: 10_000
    },
    components
  )
  const head = { producer: 'self', seq: 1501, root: copy.root.toString(), hlc: '0', acks: {} } as unknown as Head
  check.offer(head, copy.path)
  await waitFor('the check to give its verdict', () => results.length > 0, 30_000)
  await check.stop()
  expect(logged).toEqual([])
  expect(results).toEqual(['forked'])
  expect(dispatched).toHaveLength(1)
})
