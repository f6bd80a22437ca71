import * as dagPb from '@ipld/dag-pb'
import { murmur3128 } from '@multiformats/murmur3'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import { Digest } from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import { sha256Digest, type Block, type DirEntry } from './tree.ts'
import { MalformedDirectoryError, ShardUnreadableError } from '../errors.ts'

/**
 * UnixFS HAMT parameters: murmur3-x64-64 as every implementation hashes, and fanout 16 rather than the
 * importers' usual 256. Fanout is recorded in every shard and readers (kubo, ipfs-unixfs-exporter, this
 * one) take any power of two. A commit re-encodes the shards on the changed paths: with 16 links a shard
 * is ~1 KiB instead of ~18 KiB, so a commit writes 5x fewer block bytes, a one-event hint shrinks from
 * ~13 KiB to ~3 KiB, and a large bucket costs a level or two more to walk (fetched a level at a time).
 */
const FANOUT = 16
/** the HAMT fanouts a directory may have: what cairn writes, and 256 as earlier versions wrote */
export const ACCEPTED_FANOUTS: readonly number[] = [16, 256]
const HASH_TYPE = 0x22n
/** hex digits of a shard label: those of fanout - 1 */
const PAD = (FANOUT - 1).toString(16).length
/** shards above this level always stay in memory (at most 1 + 16 + 256); deeper ones within a budget */
const KEEP_LEVELS = 3
/**
 * How many shards `KEEP_LEVELS` deep and deeper a directory backed by a store keeps decoded after a flush,
 * by default, so that the next commits do not read back and decode the shards they touch. A shard holds
 * at most `FANOUT` entries of bounded names, so this bounds the memory whatever the directory's size;
 * past it, a flush drops whole subtrees until a quarter of the budget is free (re-read when touched).
 */
export const KEEP_SHARDS = 2048
/**
 * The most bytes of encoding those shards may have together, by default: names are up to a few hundred
 * bytes long, so the count alone would not bound their memory.
 */
export const KEEP_BYTES = 2 * 1024 * 1024

/**
 * A directory entry as a HAMT leaf: its name's UTF-8 bytes (hashed and encoded as they are) and its CID's
 * bytes; a CID object is made only when the entry is looked up, so that a shard in memory holds none.
 */
class Leaf {
  readonly name: string
  readonly key: Uint8Array
  readonly hash: Uint8Array
  readonly size: number

  constructor(name: string, key: Uint8Array, hash: Uint8Array, size: number) {
    this.name = name
    this.key = key
    this.hash = hash
    this.size = size
  }
}

/** A block the directory reads back: undefined when the store does not hold it. */
export type BlockReader = (cid: CID) => Uint8Array | undefined

/** One shard: its slots when loaded (undefined: only its CID and size are known), its CID once encoded. */
class Shard {
  slots: Array<Leaf | Shard | undefined> | undefined
  cid: CID | undefined
  /** cumulative size (the shard's bytes and everything below), valid when not dirty */
  size = 0
  /** the length of its encoding, once read or encoded */
  bytes = 0
  dirty = true

  static empty(): Shard {
    const s = new Shard()
    s.slots = new Array(FANOUT)
    return s
  }

  static stored(cid: CID, size: number): Shard {
    const s = new Shard()
    s.cid = cid
    s.size = size
    s.dirty = false
    return s
  }
}

/**
 * The slot of `key` at `level` in a HAMT of fanout 2^`bits` (4 or 8): the UnixFS HAMT rule (as
 * hamt-sharding and kubo place entries), `bits` bits a level, most significant first, from
 * murmur3-x64-64 of the name (the first 8 bytes of murmur3-x64-128); once those 64 bits are used up, the
 * hash of the name followed by the byte `level * bits / 64`.
 */
function slotAt(key: Uint8Array, level: number, bits: number, hashes: Uint8Array[]): number {
  const offset = level * bits
  const k = Math.floor(offset / 64)
  // murmur3's encode is synchronous (the typing allows any hasher's Promise).
  hashes[k] ??= murmur3128.encode(k === 0 ? key : Uint8Array.from([...key, k])) as Uint8Array
  const bit = offset % 64
  const byte = hashes[k][bit >> 3]
  if (bits === 8) return byte
  return (bit & 7) === 0 ? byte >> 4 : byte & 15
}

/** @returns the label of the slot `name` takes at `level` of a HAMT shard of `fanout` (16 or 256): where to look for it */
export function labelAt(name: string, level: number, fanout: number, hashes: Uint8Array[] = []): string {
  const bits = Math.log2(fanout)
  return slotAt(utf8.encode(name), level, bits, hashes)
    .toString(16)
    .toUpperCase()
    .padStart(bits / 4, '0')
}

/** The slot of `key` at `level` for cairn's fanout 16. */
const slotOf = (key: Uint8Array, level: number, hashes: Uint8Array[]): number => slotAt(key, level, 4, hashes)

const utf8 = new TextEncoder()

/**
 * A UnixFS HAMT-sharded directory (fanout 16) that a commit updates in place: only the shards on the
 * path of a changed entry get new CIDs, so a reader that remembers shard CIDs walks only what changed:
 * syncing one new file costs the same in a bucket of a thousand files as in one of a hundred thousand,
 * and no block outgrows the bitswap limit.
 *
 * Its memory does not grow with the directory: given a `read` function (the blockstore), it starts from
 * a stored root and loads the shards on the paths it changes; after a flush it keeps only the top
 * levels. The shape is canonical: a sub-shard exists exactly where two or more names share its prefix,
 * so the same entries give the same CIDs however they were added and removed, and the same CIDs as
 * hamt-sharding builds for them.
 */
export class ShardedDirectory {
  private root: Shard
  /** the root shard's encoded bytes, once encoded or read */
  private rootBytes: Uint8Array | undefined
  private readonly read: BlockReader | undefined
  private count: number
  /** how many shards `KEEP_LEVELS` deep and deeper stay decoded after a flush */
  private readonly keep: number
  /** how many bytes of encoding those shards may have together */
  private readonly keepBytes: number
  /** where the next eviction starts among the subtrees `KEEP_LEVELS` deep, so that it goes round them all */
  private cursor = 0
  /** how many shards `KEEP_LEVELS` deep and deeper are decoded (counted as they are read, made and dropped) */
  private deep = 0
  /** the bytes of their encodings */
  private deepBytes = 0

  /**
   * @param options.root the stored root shard to start from (with `read`); omitted: an empty directory
   * @param options.count how many entries the stored directory holds
   * @param options.read reads shards back from the store; without it everything stays in memory
   * @param options.keep with `read`: how many shards `KEEP_LEVELS` deep and deeper stay decoded after a flush (default KEEP_SHARDS)
   * @param options.keepBytes with `read`: how many bytes of encoding those shards may have together (default KEEP_BYTES)
   */
  constructor(options: { root?: { cid: CID; size: number }; count?: number; read?: BlockReader; keep?: number; keepBytes?: number } = {}) {
    this.read = options.read
    this.keep = options.keep ?? KEEP_SHARDS
    this.keepBytes = options.keepBytes ?? KEEP_BYTES
    this.root = options.root != null && options.read != null ? Shard.stored(options.root.cid, options.root.size) : Shard.empty()
    this.count = options.root != null ? (options.count ?? 0) : 0
  }

  /** how many entries it holds */
  get size(): number {
    return this.count
  }

  /**
   * Adds (or replaces) entries.
   *
   * @throws ShardUnreadableError when a shard on the way is not in the store
   */
  add(entries: readonly DirEntry[]): void {
    for (const entry of entries) {
      const key = utf8.encode(entry.name)
      const hashes: Uint8Array[] = []
      let shard = this.root
      let level = 0
      for (;;) {
        const slots = this.load(shard, level)
        shard.dirty = true
        const i = slotOf(key, level, hashes)
        const here = slots[i]
        if (here === undefined || (!(here instanceof Shard) && here.name === entry.name)) {
          if (here === undefined) this.count++
          slots[i] = new Leaf(entry.name, key, entry.cid.bytes, entry.size)
          break
        }
        if (here instanceof Shard) {
          shard = here
        } else {
          // Another name in this slot: both go one level down, into a new shard.
          const sub = Shard.empty()
          if (level + 1 >= KEEP_LEVELS) this.deep++
          sub.slots![slotOf(here.key, level + 1, [])] = here
          slots[i] = sub
          shard = sub
        }
        level++
      }
    }
  }

  /**
   * Looks an entry up, reading the shards on its path (and only those) from the store.
   *
   * @returns the entry, or undefined when the directory does not hold the name
   * @throws ShardUnreadableError when a shard on the way is not in the store
   */
  get(name: string): DirEntry | undefined {
    const key = utf8.encode(name)
    const hashes: Uint8Array[] = []
    let shard = this.root
    for (let level = 0; ; level++) {
      const here = this.load(shard, level)[slotOf(key, level, hashes)]
      if (here instanceof Shard) {
        shard = here
        continue
      }
      return here !== undefined && here.name === name ? { name: here.name, cid: CID.decode(here.hash), size: here.size } : undefined
    }
  }

  /**
   * Removes entries (names it does not hold are ignored). A shard left with a single entry gives it
   * back to its parent, level after level, so that the shape stays canonical.
   *
   * @throws ShardUnreadableError when a shard on the way is not in the store
   */
  remove(names: Iterable<string>): void {
    for (const name of names) {
      const key = utf8.encode(name)
      const hashes: Uint8Array[] = []
      const path: Array<{ shard: Shard; slot: number }> = []
      let shard = this.root
      for (let level = 0; ; level++) {
        const slots = this.load(shard, level)
        const i = slotOf(key, level, hashes)
        path.push({ shard, slot: i })
        const here = slots[i]
        if (here instanceof Shard) {
          shard = here
          continue
        }
        if (here === undefined || here.name !== name) {
          path.length = 0
          break
        }
        slots[i] = undefined
        this.count--
        break
      }
      for (const p of path) p.shard.dirty = true
      for (let k = path.length - 1; k > 0; k--) {
        const children = path[k].shard.slots!.filter((c) => c !== undefined)
        if (children.length !== 1 || children[0] instanceof Shard) break
        path[k - 1].shard.slots![path[k - 1].slot] = children[0]
        if (k >= KEEP_LEVELS) {
          this.deep--
          this.deepBytes -= path[k].shard.bytes
        }
      }
    }
  }

  /** With a store to read them back from, drops every clean shard `KEEP_LEVELS` deep and deeper from memory. */
  release(): void {
    if (this.read != null) this.trim(0, 0)
  }

  /** how many shards `KEEP_LEVELS` deep and deeper are decoded in memory, counted shard by shard */
  get deepShards(): number {
    return this.deepRoots().reduce((n, root) => n + ShardedDirectory.decoded(root).shards, 0)
  }

  /** the bytes of encoding of the shards `KEEP_LEVELS` deep and deeper decoded in memory, counted shard by shard */
  get deepShardBytes(): number {
    return this.deepRoots().reduce((n, root) => n + ShardedDirectory.decoded(root).bytes, 0)
  }

  /**
   * Encodes the changed shards and, with a store to read them back from, drops deep ones from memory
   * beyond the budget.
   *
   * @returns the root shard (with the DAG's cumulative size) and the shard blocks that are new since the last flush
   */
  async flush(): Promise<{ root: Block & { size: number }; blocks: Block[] }> {
    const blocks: Block[] = []
    this.rootBytes = this.encode(this.root, blocks, 0) ?? this.rootBytes ?? this.stored(this.root.cid!)
    if (this.read != null) this.trim(this.keep, this.keepBytes)
    return { root: { cid: this.root.cid!, bytes: this.rootBytes, size: this.root.size }, blocks }
  }

  /** @returns a shard's bytes from the store */
  private stored(cid: CID): Uint8Array {
    const bytes = this.read?.(cid)
    if (bytes == null) throw new ShardUnreadableError(`HAMT shard ${cid} is not in the block store`)
    return bytes
  }

  /** @returns the shard's slots, read from the store when not in memory */
  private load(shard: Shard, level: number): Array<Leaf | Shard | undefined> {
    if (shard.slots != null) return shard.slots
    const bytes = this.stored(shard.cid!)
    const read = readOwnShard(bytes) ?? this.readShard(shard, bytes)
    shard.slots = read
    shard.bytes = bytes.length
    if (level >= KEEP_LEVELS) {
      this.deep++
      this.deepBytes += bytes.length
    }
    return read
  }

  /** @returns the slots of a shard decoded in full (a shard not as cairn writes them, or not a shard) */
  private readShard(shard: Shard, bytes: Uint8Array): Array<Leaf | Shard | undefined> {
    let node: DirectoryNode
    try {
      node = decodeDirectoryNode(bytes)
    } catch (err) {
      throw new ShardUnreadableError(`HAMT shard ${shard.cid} cannot be read: ${(err as Error).message}`)
    }
    if (node.fanout !== FANOUT) throw new ShardUnreadableError(`HAMT shard ${shard.cid} has fanout ${node.fanout}, not ${FANOUT}`)
    const slots = new Array<Leaf | Shard | undefined>(FANOUT)
    for (const s of node.shards) slots[parseInt(s.label, 16)] = Shard.stored(s.cid, s.size)
    for (const e of node.entries) slots[parseInt(e.label, 16)] = new Leaf(e.name, utf8.encode(e.name), e.cid.bytes, e.size)
    return slots
  }

  /** @returns the bytes of the shard when it was re-encoded (its new block is in `blocks`) */
  private encode(shard: Shard, blocks: Block[], level: number): Uint8Array | undefined {
    if (!shard.dirty) return undefined
    const links: ShardLink[] = []
    let size = 0
    let bitmap = 0
    for (let i = 0; i < FANOUT; i++) {
      const child = shard.slots![i]
      if (child === undefined) continue
      bitmap |= 1 << i
      if (child instanceof Shard) this.encode(child, blocks, level + 1)
      links.push(child instanceof Shard ? { slot: i, name: NO_NAME, hash: child.cid!.bytes, size: child.size } : { slot: i, name: child.key, hash: child.hash, size: child.size })
      size += child.size
    }
    const bytes = encodeShard(links, shardData(bitmap))
    shard.cid = CID.createV1(dagPb.code, sha256Digest(bytes))
    shard.size = size + bytes.length
    if (level >= KEEP_LEVELS) this.deepBytes += bytes.length - shard.bytes
    shard.bytes = bytes.length
    shard.dirty = false
    blocks.push({ cid: shard.cid, bytes })
    return bytes
  }

  /** @returns the decoded shards `KEEP_LEVELS` deep, in tree order */
  private deepRoots(): Shard[] {
    const roots: Shard[] = []
    const visit = (shard: Shard, level: number): void => {
      if (shard.slots == null) return
      if (level === KEEP_LEVELS) {
        roots.push(shard)
        return
      }
      for (const child of shard.slots) if (child instanceof Shard) visit(child, level + 1)
    }
    visit(this.root, 0)
    return roots
  }

  /** @returns how many shards are decoded in the subtree of `shard` (itself included) and their bytes of encoding */
  private static decoded(shard: Shard): { shards: number; bytes: number } {
    const sum = { shards: 1, bytes: shard.bytes }
    for (const child of shard.slots!) {
      if (!(child instanceof Shard) || child.slots == null) continue
      const below = ShardedDirectory.decoded(child)
      sum.shards += below.shards
      sum.bytes += below.bytes
    }
    return sum
  }

  /**
   * Over the budget, drops the slots of clean subtrees `KEEP_LEVELS` deep, going round them from where the
   * last eviction stopped, until a quarter of the budget is free: they are read back when touched.
   */
  private trim(budget: number, budgetBytes: number): void {
    if (this.deep <= budget && this.deepBytes <= budgetBytes) return
    const roots = this.deepRoots()
    const target = Math.floor((budget * 3) / 4)
    const targetBytes = Math.floor((budgetBytes * 3) / 4)
    let k = 0
    for (; k < roots.length && (this.deep > target || this.deepBytes > targetBytes); k++) {
      const root = roots[(this.cursor + k) % roots.length]
      if (root.dirty) continue
      const dropped = ShardedDirectory.decoded(root)
      this.deep -= dropped.shards
      this.deepBytes -= dropped.bytes
      root.slots = undefined
    }
    // The subtrees dropped leave the list: the next one not dropped then sits where this round started
    // (or first, when the round wrapped).
    this.cursor = this.cursor + k > roots.length ? 0 : this.cursor
  }
}

/** The link labels of a shard's slots: fixed-width uppercase hex, so that they sort in slot order. */
const LABELS: readonly string[] = Array.from({ length: FANOUT }, (_, i) => i.toString(16).toUpperCase().padStart(PAD, '0'))

/** One link of a shard as it is encoded: its slot (the label) and the entry's name, the child's CID bytes and cumulative size. */
interface ShardLink {
  slot: number
  /** the UTF-8 name after the label; empty for a sub-shard */
  name: Uint8Array
  hash: Uint8Array
  size: number
}

const NO_NAME = new Uint8Array(0)
/** the UTF-8 byte of each slot's label (one hex digit) */
const LABEL_BYTES: readonly number[] = LABELS.map((l) => l.charCodeAt(0))

/** The UnixFS data of a shard, by its bitmap (at most 2^FANOUT of them, each a few bytes). */
const SHARD_DATA = new Map<number, Uint8Array>()

/** @returns the UnixFS data of a HAMT shard with this bitmap, as hamt-sharding writes it */
function shardData(bitmap: number): Uint8Array {
  let data = SHARD_DATA.get(bitmap)
  if (data == null) {
    // The bit field as hamt-sharding writes it: big-endian, without leading zero bytes.
    const field = [bitmap >> 8, bitmap & 0xff]
    while (field.length > 0 && field[0] === 0) field.shift()
    data = new UnixFS({ type: 'hamt-sharded-directory', data: Uint8Array.from(field), fanout: BigInt(FANOUT), hashType: HASH_TYPE }).marshal()
    SHARD_DATA.set(bitmap, data)
  }
  return data
}

/** @returns how many bytes the protobuf varint of `n` takes */
function varintLength(n: number): number {
  let len = 1
  while (n >= 0x80) {
    n = Math.floor(n / 128)
    len++
  }
  return len
}

/** Writes the protobuf varint of `n` at `at`; @returns the offset after it */
function writeVarint(out: Uint8Array, at: number, n: number): number {
  while (n >= 0x80) {
    out[at++] = (n % 128) | 0x80
    n = Math.floor(n / 128)
  }
  out[at++] = n
  return at
}

/**
 * Encodes a shard as dag-pb: its links (already in byte order: the fixed-width labels sort by slot), then
 * its data, the byte layout `@ipld/dag-pb`'s encode gives (field 2 Links each with Hash 1, Name 2, Tsize
 * 3; then field 1 Data), without its generic checks: the links are built here and are valid by construction.
 */
function encodeShard(links: readonly ShardLink[], data: Uint8Array): Uint8Array {
  const linkLengths: number[] = new Array(links.length)
  let total = 1 + varintLength(data.length) + data.length
  for (let i = 0; i < links.length; i++) {
    const l = links[i]
    const nameLength = 1 + l.name.length
    const len = 1 + varintLength(l.hash.length) + l.hash.length + 1 + varintLength(nameLength) + nameLength + 1 + varintLength(l.size)
    linkLengths[i] = len
    total += 1 + varintLength(len) + len
  }
  const out = new Uint8Array(total)
  let at = 0
  for (let i = 0; i < links.length; i++) {
    const l = links[i]
    out[at++] = 0x12
    at = writeVarint(out, at, linkLengths[i])
    out[at++] = 0x0a
    at = writeVarint(out, at, l.hash.length)
    // Byte by byte: for a few dozen bytes this is faster than TypedArray.set.
    for (let k = 0; k < l.hash.length; k++) out[at++] = l.hash[k]
    out[at++] = 0x12
    at = writeVarint(out, at, 1 + l.name.length)
    out[at++] = LABEL_BYTES[l.slot]
    for (let k = 0; k < l.name.length; k++) out[at++] = l.name[k]
    out[at++] = 0x18
    at = writeVarint(out, at, l.size)
  }
  out[at++] = 0x0a
  at = writeVarint(out, at, data.length)
  out.set(data, at)
  return out
}

/** where readVarint reads next */
let cursor = 0

/** @returns the minimal protobuf varint at `cursor` (which it advances) below 2^49, or -1 for anything else */
function readVarint(bytes: Uint8Array, end: number): number {
  let n = 0
  let scale = 1
  for (let k = 0; k < 7 && cursor < end; k++) {
    const b = bytes[cursor++]
    n += (b & 0x7f) * scale
    if (b < 0x80) return k > 0 && b === 0 ? -1 : n
    scale *= 128
  }
  return -1
}

/** @returns whether `bytes[at..at+36)` is a CIDv1 of a raw or dag-pb block with a sha2-256 multihash */
const isSha256Cid = (bytes: Uint8Array, at: number): boolean => bytes[at] === 0x01 && (bytes[at + 1] === 0x55 || bytes[at + 1] === 0x70) && bytes[at + 2] === 0x12 && bytes[at + 3] === 0x20

const names = new TextDecoder()

/**
 * @returns the CID of a link whose hash `readOwnLinks` checked (a CIDv1 of a raw or dag-pb block with a
 * sha2-256 multihash, 36 bytes): the object `CID.decode` gives, without its generic parse and copies
 */
const cidOfLink = (hash: Uint8Array): CID => new CID(1, hash[1], new Digest(sha256.code, 32, hash.subarray(4), hash.subarray(2)), hash)

/**
 * Reads the links of a shard laid out exactly as `encodeShard` writes it (fanout 16, ASCII names, CIDv1
 * sha2-256 links, the shard data its bitmap gives), without the generic decoders, calling `link` for each
 * in slot order with its slot, its CID's bytes, its name's bytes after the label (undefined for a
 * sub-shard) and its cumulative size: what the full decode gives for the same bytes.
 *
 * @returns whether the bytes have that layout; when not, the links already passed to `link` are to be
 * dropped and the bytes decoded in full (with the full decode's errors and checks)
 */
function readOwnLinks(bytes: Uint8Array, link: (slot: number, hash: Uint8Array, key: Uint8Array | undefined, size: number) => void): boolean {
  const end = bytes.length
  let bitmap = 0
  let previous = -1
  cursor = 0
  while (cursor < end && bytes[cursor] === 0x12) {
    cursor++
    const length = readVarint(bytes, end)
    const linkEnd = cursor + length
    if (length < 0 || linkEnd > end || bytes[cursor] !== 0x0a || bytes[cursor + 1] !== 36 || !isSha256Cid(bytes, cursor + 2)) return false
    const hash = bytes.subarray(cursor + 2, cursor + 38)
    cursor += 38
    if (bytes[cursor++] !== 0x12) return false
    const nameLength = readVarint(bytes, linkEnd)
    const nameStart = cursor
    const nameEnd = cursor + nameLength
    if (nameLength < 1 || nameEnd > linkEnd) return false
    const label = bytes[nameStart]
    const slot = label >= 0x30 && label <= 0x39 ? label - 0x30 : label >= 0x41 && label <= 0x46 ? label - 0x37 : -1
    if (slot <= previous) return false
    for (let k = nameStart + 1; k < nameEnd; k++) if (bytes[k] >= 0x80) return false
    cursor = nameEnd
    if (bytes[cursor++] !== 0x18) return false
    const size = readVarint(bytes, linkEnd)
    if (size < 0 || cursor !== linkEnd) return false
    previous = slot
    bitmap |= 1 << slot
    link(slot, hash, nameLength === 1 ? undefined : bytes.subarray(nameStart + 1, nameEnd), size)
  }
  if (bytes[cursor++] !== 0x0a) return false
  const dataLength = readVarint(bytes, end)
  const data = shardData(bitmap)
  if (dataLength !== data.length || cursor + dataLength !== end) return false
  for (let k = 0; k < dataLength; k++) if (bytes[cursor + k] !== data[k]) return false
  return true
}

/**
 * Reads a shard as cairn writes it (see readOwnLinks) into the slots of a directory being written.
 *
 * @returns the shard's slots, or undefined for any other bytes (then decoded in full, with its errors)
 */
function readOwnShard(bytes: Uint8Array): Array<Leaf | Shard | undefined> | undefined {
  const slots = new Array<Leaf | Shard | undefined>(FANOUT)
  const own = readOwnLinks(bytes, (slot, hash, key, size) => {
    slots[slot] = key === undefined ? Shard.stored(cidOfLink(hash), size) : new Leaf(names.decode(key), key, hash, size)
  })
  return own ? slots : undefined
}

/**
 * Reads a directory node that is a shard as cairn writes it (see readOwnLinks), as the full decode
 * (`decodeDirectoryNode`) reads it.
 *
 * @returns the node, or undefined for any other bytes
 */
export function readOwnDirectoryNode(bytes: Uint8Array): DirectoryNode | undefined {
  const node: DirectoryNode = { entries: [], shards: [], fanout: FANOUT }
  const own = readOwnLinks(bytes, (slot, hash, key, size) => {
    if (key === undefined) node.shards.push({ label: LABELS[slot], cid: cidOfLink(hash), size })
    else node.entries.push({ name: names.decode(key), cid: cidOfLink(hash), size, label: LABELS[slot] })
  })
  return own ? node : undefined
}

/** Encodes a HAMT-sharded directory of `entries` in one go (see ShardedDirectory). */
export async function shardedDirectory(entries: readonly DirEntry[]): Promise<{ root: Block & { size: number }; blocks: Block[] }> {
  const dir = new ShardedDirectory()
  dir.add(entries)
  return await dir.flush()
}

/** What one directory node holds: entries, and for a HAMT shard, its sub-shards (by label). */
export interface DirectoryNode {
  /** entries, each with the label of its slot in a HAMT shard ('' in a plain directory) */
  entries: Array<DirEntry & { label: string }>
  /** sub-shards of a HAMT shard, with the cumulative size their link gives */
  shards: Array<{ label: string; cid: CID; size: number }>
  /** a HAMT shard's fanout, 0 for a plain directory */
  fanout: number
}

/** A HAMT link's label, by its width (1 hex digit for fanout 16, 2 for 256) */
const LABEL_PATTERNS: Record<number, RegExp> = { 1: /^[0-9A-F]{1}/, 2: /^[0-9A-F]{2}/ }

/**
 * Reads a UnixFS directory node, plain or HAMT shard: a shard as cairn writes it without the generic
 * decoders (readOwnDirectoryNode), anything else through them (decodeDirectoryNode), with the same result
 * for the same bytes.
 *
 * @throws MalformedDirectoryError when the block is neither
 */
export function readDirectoryNode(bytes: Uint8Array): DirectoryNode {
  return readOwnDirectoryNode(bytes) ?? decodeDirectoryNode(bytes)
}

/**
 * Decodes a UnixFS directory node, plain or HAMT shard, with the generic decoders (dag-pb, UnixFS).
 *
 * @throws MalformedDirectoryError when the block is neither
 */
export function decodeDirectoryNode(bytes: Uint8Array): DirectoryNode {
  let node: dagPb.PBNode
  let fs: UnixFS
  try {
    node = dagPb.decode(bytes)
    if (node.Data == null) throw new MalformedDirectoryError('not a UnixFS directory: the node has no data')
    fs = UnixFS.unmarshal(node.Data)
  } catch (err) {
    if (err instanceof MalformedDirectoryError) throw err
    throw new MalformedDirectoryError(`not a UnixFS directory: ${(err as Error).message}`)
  }
  if (fs.type === 'directory') {
    return { entries: node.Links.map((l) => ({ name: l.Name ?? '', cid: l.Hash, size: l.Tsize ?? 0, label: '' })), shards: [], fanout: 0 }
  }
  if (fs.type !== 'hamt-sharded-directory') throw new MalformedDirectoryError(`not a UnixFS directory: it is a ${fs.type}`)
  // Only the fanouts cairn has written: 16 now, 256 before (as the importers' default).
  const fanout = Number(fs.fanout)
  if (!ACCEPTED_FANOUTS.includes(fanout)) throw new MalformedDirectoryError(`unsupported HAMT: fanout ${fs.fanout} is not one of ${ACCEPTED_FANOUTS.join(', ')}`)
  const pad = (fanout - 1).toString(16).length
  const label = LABEL_PATTERNS[pad]
  const out: DirectoryNode = { entries: [], shards: [], fanout }
  let previous = -1
  for (const l of node.Links) {
    const name = l.Name ?? ''
    const slot = parseInt(name.slice(0, pad), 16)
    if (!label.test(name) || slot >= fanout) throw new MalformedDirectoryError(`bad HAMT link name "${name}"`)
    // One link a slot, in slot order: a second link in a slot is no HAMT.
    if (slot <= previous) throw new MalformedDirectoryError(`HAMT link "${name}" repeats or is out of slot order`)
    previous = slot
    if (name.length === pad) out.shards.push({ label: name, cid: l.Hash, size: l.Tsize ?? 0 })
    else out.entries.push({ name: name.slice(pad), cid: l.Hash, size: l.Tsize ?? 0, label: name.slice(0, pad) })
  }
  return out
}

/**
 * Checks that a HAMT shard is where the UnixFS HAMT rule puts it: every entry's name hashes to the
 * slots of the path from the bucket's root shard (`slots`, empty for the root itself) and then to its
 * own label; below the root, a shard holds a sub-shard or at least two entries (one entry alone goes
 * to its parent, as every importer does). In such a tree each name has exactly one place, so a shard
 * reused at another place, or an entry copied to another slot, is refused.
 *
 * @returns why the shard is not canonical, or undefined when it is
 */
export function misplacedIn(node: DirectoryNode, slots: readonly number[]): string | undefined {
  const bits = Math.log2(node.fanout)
  if (node.fanout === 0) return slots.length === 0 ? undefined : 'a plain directory sits inside a HAMT'
  if (slots.length > 0 && node.shards.length === 0 && node.entries.length < 2) return `a shard below the root holds ${node.entries.length} entr${node.entries.length === 1 ? 'y' : 'ies'} and no shard`
  const level = slots.length
  for (const e of node.entries) {
    const key = utf8.encode(e.name)
    const hashes: Uint8Array[] = []
    for (let i = 0; i < level; i++) if (slotAt(key, i, bits, hashes) !== slots[i]) return `"${e.name}" does not hash to the shard it sits in`
    if (slotAt(key, level, bits, hashes) !== parseInt(e.label, 16)) return `"${e.name}" does not hash to slot ${e.label}`
  }
  return undefined
}
