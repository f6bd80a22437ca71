import { expect, test } from 'bun:test'
import { murmur3128 } from '@multiformats/murmur3'
import { createHAMT } from 'hamt-sharding'
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

test('labelAt is the slot hamt-sharding (the importers, fanout 256) gives every name at every level', async () => {
  // ipfs-unixfs-importer's hash: the first 8 bytes of murmur3-x64-128, reversed (hamt-sharding reads from the end)
  const hashFn = async (buf: Uint8Array): Promise<Uint8Array> => (await murmur3128.encode(buf)).subarray(0, 8).reverse()
  for (const bits of [4, 8]) {
    const bucket = createHAMT<boolean>({ hashFn, bits })
    for (const n of names) await bucket.put(n, true)
    for (const n of names) {
      // walk the bucket's children by the labels labelAt gives
      let b: any = bucket
      const hashes: Uint8Array[] = []
      for (let level = 0; ; level++) {
        const child = b._children.get(parseInt(labelAt(n, level, 2 ** bits, hashes), 16))
        expect(child).toBeDefined()
        if (child.key === n) break
        expect(child._children).toBeDefined()
        b = child
      }
    }
  }
})

test('labelAt past the first 64 bits of hash is what hamt-sharding takes (the name and the byte of the round, hashed again)', async () => {
  const { InfiniteHash } = await import('../../node_modules/hamt-sharding/dist/src/consumable-hash.js')
  const hashFn = async (buf: Uint8Array): Promise<Uint8Array> => (await murmur3128.encode(buf)).subarray(0, 8).reverse()
  for (const bits of [4, 8]) {
    for (const n of names.slice(0, 200)) {
      const h = new InfiniteHash(new TextEncoder().encode(n), hashFn)
      const hashes: Uint8Array[] = []
      for (let level = 0; level < (bits === 4 ? 40 : 20); level++) expect(parseInt(labelAt(n, level, 2 ** bits, hashes), 16)).toBe(await h.take(bits))
    }
  }
})
