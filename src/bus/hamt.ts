import * as dagPb from '@ipld/dag-pb'
import { murmur3128 } from '@multiformats/murmur3'
import { createHAMT, Bucket } from 'hamt-sharding'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import type { Block, DirEntry } from './tree.ts'

/**
 * UnixFS HAMT parameters: murmur3-x64-64 as every implementation hashes, and fanout 16 rather than the
 * importers' usual 256. Fanout is recorded in every shard and readers (kubo, ipfs-unixfs-exporter, this
 * one) take any power of two. A commit re-encodes the shards on the changed paths: with 16 links a shard
 * is ~1 KiB instead of ~18 KiB, so a commit writes 5x fewer block bytes, a one-event hint shrinks from
 * ~13 KiB to ~3 KiB, and a large bucket costs a level or two more to walk (fetched a level at a time).
 */
const FANOUT_BITS = 4
const HASH_TYPE = 0x22n
/** hex digits of a shard label: those of fanout - 1 */
const PAD = ((1 << FANOUT_BITS) - 1).toString(16).length

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
  private bucket = createHAMT<DirEntry>({ hashFn: hamtHash, bits: FANOUT_BITS })
  private cache = new WeakMap<Bucket<DirEntry>, Block & { size: number }>()

  /** how many entries it holds (counted here: the library's leafCount() walks the whole tree) */
  private count = 0

  /** Adds (or replaces) entries, invalidating the cached shards on their paths. */
  async add (entries: readonly DirEntry[]): Promise<void> {
    for (const e of entries) {
      // What bucket.put() does, keeping its place: one walk down (one hash) tells whether the name was
      // there and which shards to invalidate.
      const place = await this.bucket._findNewBucketAndPos(e.name)
      if (place.existingChild?.key !== e.name) this.count++
      place.bucket._putAt(place, e.name, e)
      let b: Bucket<DirEntry> | undefined = place.bucket
      while (b != null) { this.cache.delete(b); b = b._parent }
    }
  }

  /**
   * Removes entries by rebuilding the directory from what remains: hamt-sharding collapses a shard left
   * with one entry by one level only, so a deleted-from HAMT can differ from (and have another CID than)
   * the canonical one that any other writer would build from the same entries. Pruning is rare.
   */
  async remove (names: Iterable<string>): Promise<void> {
    const gone = new Set(names)
    // Nothing to remove costs nothing (every commit passes its removals, usually none).
    if (gone.size === 0) return
    const kept: DirEntry[] = []
    for (const leaf of this.bucket.eachLeafSeries()) if (!gone.has(leaf.key)) kept.push(leaf.value)
    if (kept.length === this.count) return
    this.bucket = createHAMT<DirEntry>({ hashFn: hamtHash, bits: FANOUT_BITS })
    this.cache = new WeakMap()
    this.count = 0
    await this.add(kept)
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
  // Any power of two up to 1024 (cairn writes 16, earlier versions and other importers 256).
  const fanout = Number(fs.fanout)
  if (!Number.isInteger(fanout) || fanout < 2 || fanout > 1024 || (fanout & (fanout - 1)) !== 0) throw new TypeError(`unsupported HAMT: fanout ${fs.fanout} is not a power of two up to 1024`)
  const pad = (fanout - 1).toString(16).length
  const label = new RegExp(`^[0-9A-F]{${pad}}`)
  const out: DirectoryNode = { entries: [], shards: [] }
  for (const l of node.Links) {
    const name = l.Name ?? ''
    if (!label.test(name) || parseInt(name.slice(0, pad), 16) >= fanout) throw new TypeError(`bad HAMT link name "${name}"`)
    if (name.length === pad) out.shards.push({ label: name, cid: l.Hash })
    else out.entries.push({ name: name.slice(pad), cid: l.Hash, size: l.Tsize ?? 0 })
  }
  return out
}
