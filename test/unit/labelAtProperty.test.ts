import { expect, test } from 'bun:test'
import type { CID } from 'multiformats/cid'
import { fileName } from '../../src/model/layout.ts'
import { labelAt, readDirectoryNode, ShardedDirectory, type DirectoryNode } from '../../src/unixfs/hamt.ts'
import { fileBlockSync } from '../../src/unixfs/tree.ts'

const uuid7 = (i: number): string => {
  const h = (n: number, w: number): string => n.toString(16).padStart(w, '0').slice(-w)
  return `${h(0x0190a000 + i, 8)}-${h(i * 7919, 4)}-7${h(i * 31, 3)}-8${h(i * 131, 3)}-${h(i * 104729, 12)}`
}
const names = Array.from({ length: 3000 }, (_, i) => fileName(i + 1, uuid7(i)))

/** the lookup ForkCheck.byName makes, over decoded blocks */
function lookUp(blocks: Map<string, Uint8Array>, root: CID, name: string): CID | undefined {
  const hashes: Uint8Array[] = []
  let node: DirectoryNode = readDirectoryNode(blocks.get(root.toString())!)
  for (let level = 0; ; level++) {
    const label = labelAt(name, level, node.fanout, hashes)
    const entry = node.entries.find((e) => e.label === label)
    if (entry != null) return entry.name === name ? entry.cid : undefined
    const shard = node.shards.find((x) => x.label === label)
    if (shard == null) return undefined
    node = readDirectoryNode(blocks.get(shard.cid.toString())!)
  }
}

test('labelAt finds every name of a fanout-16 bucket as ShardedDirectory writes it, also after removals collapse shards', async () => {
  const dir = new ShardedDirectory()
  const blocks = new Map<string, Uint8Array>()
  const cids = new Map(names.map((n) => [n, fileBlockSync(new TextEncoder().encode(n)).cid]))
  dir.add(names.map((n) => ({ name: n, cid: cids.get(n)!, size: 1 })))
  let flushed = await dir.flush()
  for (const b of [flushed.root, ...flushed.blocks]) blocks.set(b.cid.toString(), b.bytes)
  for (const n of names) expect(lookUp(blocks, flushed.root.cid, n)?.toString()).toBe(cids.get(n)!.toString())
  const removed = names.filter((_, i) => i % 3 !== 0)
  dir.remove(removed)
  flushed = await dir.flush()
  for (const b of [flushed.root, ...flushed.blocks]) blocks.set(b.cid.toString(), b.bytes)
  for (const [i, n] of names.entries()) expect(lookUp(blocks, flushed.root.cid, n)?.toString()).toBe(i % 3 === 0 ? cids.get(n)!.toString() : undefined)
})
