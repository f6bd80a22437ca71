import * as dagPb from '@ipld/dag-pb'
import { murmur3128 } from '@multiformats/murmur3'
import { createHAMT, Bucket } from 'hamt-sharding'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import type { Block, DirEntry } from './tree.ts'

/** UnixFS's HAMT parameters, as kubo and the JS importer write them: fanout 256, murmur3-x64-64. */
const FANOUT_BITS = 8
const HASH_TYPE = 0x22n
const PAD = 2

async function hamtHash (bytes: Uint8Array): Promise<Uint8Array> {
  return (await murmur3128.encode(bytes)).slice(0, 8).reverse()
}

/**
 * A UnixFS HAMT-sharded directory kept in memory between commits. Only the shards on the path of a
 * changed entry get new CIDs, so a reader that remembers shard CIDs walks only what changed: syncing one
 * new file costs the same in a bucket of a thousand files as in one of a hundred thousand, and no block
 * outgrows the bitswap limit. Encoded shards are cached, so a commit re-encodes only the changed path.
 */
export class ShardedDirectory {
  private readonly bucket = createHAMT<DirEntry>({ hashFn: hamtHash, bits: FANOUT_BITS })
  private readonly cache = new WeakMap<Bucket<DirEntry>, Block & { size: number }>()

  /** how many entries it holds (counted here: the library's leafCount() walks the whole tree) */
  private count = 0

  /** Adds (or replaces) entries, invalidating the cached shards on their paths. */
  async add (entries: readonly DirEntry[]): Promise<void> {
    for (const e of entries) {
      if (await this.bucket.get(e.name) === undefined) this.count++
      await this.bucket.put(e.name, e)
      let b: Bucket<DirEntry> | undefined = (await this.bucket._findPlace(e.name)).bucket
      while (b != null) { this.cache.delete(b); b = b._parent }
    }
  }

  /** Removes entries; the shard structure may collapse, so every cached shard is dropped. */
  async remove (names: Iterable<string>): Promise<void> {
    let removed = false
    for (const name of names) {
      if (await this.bucket.get(name) === undefined) continue
      await this.bucket.del(name)
      this.count--
      removed = true
    }
    if (removed) this.dropCache(this.bucket)
  }

  get size (): number {
    return this.count
  }

  /** @returns the root shard (with the DAG's cumulative size) and the shard blocks that are new since the last flush */
  async flush (): Promise<{ root: Block & { size: number }, blocks: Block[] }> {
    const blocks: Block[] = []
    const root = await this.encode(this.bucket, blocks)
    return { root, blocks }
  }

  private dropCache (bucket: Bucket<DirEntry>): void {
    this.cache.delete(bucket)
    for (let i = 0; i < bucket._children.length; i++) {
      const child = bucket._children.get(i)
      if (child instanceof Bucket) this.dropCache(child)
    }
  }

  private async encode (bucket: Bucket<DirEntry>, blocks: Block[]): Promise<Block & { size: number }> {
    const cached = this.cache.get(bucket)
    if (cached != null) return cached
    const children = bucket._children
    // compactArray() holds the children in index order, and the bit field says which indices they
    // sit at: one pass, where children.get(i) for every slot cost a popcount each.
    const bits = children.bitField()
    const values = children.compactArray()
    const links: dagPb.PBLink[] = []
    let size = 0
    let n = 0
    for (let byte = 0; byte < bits.length; byte++) {
      for (let bit = 0; bit < 8; bit++) {
        if ((bits[byte] & (1 << bit)) === 0) continue
        const child = values[n++]
        const prefix = (byte * 8 + bit).toString(16).toUpperCase().padStart(PAD, '0')
        if (child instanceof Bucket) {
          const shard = await this.encode(child, blocks)
          links.push({ Name: prefix, Hash: shard.cid, Tsize: shard.size })
          size += shard.size
        } else {
          links.push({ Name: prefix + child.key, Hash: child.value.cid, Tsize: child.value.size })
          size += child.value.size
        }
      }
    }
    const data = new UnixFS({ type: 'hamt-sharded-directory', data: Uint8Array.from(children.bitField().reverse()), fanout: BigInt(bucket.tableSize()), hashType: HASH_TYPE })
    // The links are already in byte order (fixed-width uppercase hex prefixes sort by index), so no prepare().
    const bytes = dagPb.encode({ Data: data.marshal(), Links: links })
    const block = { cid: CID.createV1(dagPb.code, await sha256.digest(bytes)), bytes, size: size + bytes.length }
    blocks.push(block)
    this.cache.set(bucket, block)
    return block
  }
}

/** Encodes a HAMT-sharded directory of `entries` in one go (see ShardedDirectory). */
export async function shardedDirectory (entries: readonly DirEntry[]): Promise<{ root: Block & { size: number }, blocks: Block[] }> {
  const dir = new ShardedDirectory()
  await dir.add(entries)
  return await dir.flush()
}

/** What one directory node holds: entries, and for a HAMT shard, its sub-shards (by label). */
export interface DirectoryNode {
  entries: DirEntry[]
  shards: Array<{ label: string, cid: CID }>
}

/**
 * Decodes a UnixFS directory node, plain or HAMT shard.
 *
 * @throws TypeError when the block is neither
 */
export function readDirectoryNode (bytes: Uint8Array): DirectoryNode {
  const node = dagPb.decode(bytes)
  if (node.Data == null) throw new TypeError('not a UnixFS directory: the node has no data')
  const fs = UnixFS.unmarshal(node.Data)
  if (fs.type === 'directory') {
    return { entries: node.Links.map((l) => ({ name: l.Name ?? '', cid: l.Hash, size: l.Tsize ?? 0 })), shards: [] }
  }
  if (fs.type !== 'hamt-sharded-directory') throw new TypeError(`not a UnixFS directory: it is a ${fs.type}`)
  if (Number(fs.fanout) !== 256) throw new TypeError('unsupported HAMT: expected fanout 256')
  const out: DirectoryNode = { entries: [], shards: [] }
  for (const l of node.Links) {
    const name = l.Name ?? ''
    if (name.length < PAD || !/^[0-9A-F]{2}/.test(name)) throw new TypeError(`bad HAMT link name "${name}"`)
    if (name.length === PAD) out.shards.push({ label: name, cid: l.Hash })
    else out.entries.push({ name: name.slice(PAD), cid: l.Hash, size: l.Tsize ?? 0 })
  }
  return out
}
