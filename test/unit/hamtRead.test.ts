import { describe, expect, test } from 'bun:test'
import fc from 'fast-check'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { decodeDirectoryNode, readDirectoryNode, readOwnDirectoryNode, shardedDirectory, type DirectoryNode } from '../../src/unixfs/hamt.ts'
import { fileBlockSync } from '../../src/unixfs/tree.ts'

const utf8 = new TextEncoder()
const file = (i: number) => fileBlockSync(utf8.encode(`event ${i}`)).cid

/** A node with its CIDs as strings, or the error a read threw: what two readers must agree on. */
function outcome(read: (bytes: Uint8Array) => DirectoryNode | undefined, bytes: Uint8Array): unknown {
  try {
    const node = read(bytes)
    if (node === undefined) return undefined
    return {
      fanout: node.fanout,
      entries: node.entries.map((e) => [e.label, e.name, e.cid.toString(), e.size]),
      shards: node.shards.map((s) => [s.label, s.cid.toString(), s.size])
    }
  } catch (err) {
    return { error: (err as Error).name, message: (err as Error).message }
  }
}

function varint(n: number): number[] {
  const out: number[] = []
  while (n >= 0x80) {
    out.push((n % 128) | 0x80)
    n = Math.floor(n / 128)
  }
  out.push(n)
  return out
}

const field = (tag: number, bytes: ArrayLike<number>): number[] => [tag, ...varint(bytes.length), ...Array.from(bytes)]

/** One link as dag-pb lays it out: Hash (1), Name (2), Tsize (3), each part given as raw bytes so that any of them can be bent. */
interface RawLink {
  hash: Uint8Array
  name: ArrayLike<number>
  /** the Tsize field's bytes after its tag, or null for no Tsize */
  tsize?: number[] | null
  extra?: number[]
}

/** @returns the UnixFS data of a HAMT shard with this bitmap and fanout (hash type murmur3 unless told) */
function hamtData(bitmap: number, fanout = 16, hashType = 0x22n): Uint8Array {
  const bytes = bitmap > 0xff ? [bitmap >> 8, bitmap & 0xff] : bitmap > 0 ? [bitmap] : []
  return new UnixFS({ type: 'hamt-sharded-directory', data: Uint8Array.from(bytes), fanout: BigInt(fanout), hashType }).marshal()
}

/** @returns the bitmap of links labelled with one hex digit each */
const bitmapOf = (links: readonly RawLink[]): number => links.reduce((b, l) => b | (1 << parseInt(String.fromCharCode(l.name[0]), 16)), 0)

/** Encodes a dag-pb node byte by byte (the library's encoder refuses most of what these tests need). */
function pbNode(links: readonly RawLink[], data: Uint8Array | null, trailer: number[] = []): Uint8Array {
  const out: number[] = []
  for (const l of links) {
    const body = [...field(0x0a, l.hash), ...field(0x12, l.name), ...(l.tsize === null ? [] : [0x18, ...(l.tsize ?? varint(100))]), ...(l.extra ?? [])]
    out.push(...field(0x12, body))
  }
  if (data != null) out.push(...field(0x0a, data))
  return Uint8Array.from([...out, ...trailer])
}

const name = (label: string, rest = `00000000000${label.length}-x.json`): number[] => Array.from(utf8.encode(label + rest))
const link = (label: string, i: number, rest?: string): RawLink => ({ hash: file(i).bytes, name: name(label, rest) })

describe('reading HAMT shards', () => {
  test('cairn shards are read without the generic decoders, with the same result as the generic read; others go through it', async () => {
    const entries = Array.from({ length: 600 }, (_, i) => ({ name: `${String(i).padStart(12, '0')}-x.json`, cid: file(i), size: 100 + i }))
    const dir = await shardedDirectory(entries)
    const blocks = [dir.root, ...dir.blocks]
    expect(blocks.length).toBeGreaterThan(20)
    for (const b of blocks) {
      expect(readOwnDirectoryNode(b.bytes)).toBeDefined()
      expect(outcome(readDirectoryNode, b.bytes)).toEqual(outcome(decodeDirectoryNode, b.bytes))
    }
    // Sub-shards and entries both, with the link sizes and labels the generic read gives.
    expect(blocks.some((b) => (readOwnDirectoryNode(b.bytes)?.shards.length ?? 0) > 0 && (readOwnDirectoryNode(b.bytes)?.entries.length ?? 0) > 0)).toBe(true)
    // A name beyond ASCII: the generic read, the same node.
    const wide = await shardedDirectory([{ name: 'ünïcødé-名前.json', cid: file(1), size: 5 }])
    expect(readOwnDirectoryNode(wide.root.bytes)).toBeUndefined()
    expect(outcome(readDirectoryNode, wide.root.bytes)).toEqual(outcome(decodeDirectoryNode, wide.root.bytes))
    expect((outcome(readDirectoryNode, wide.root.bytes) as { entries: unknown[][] }).entries[0][1]).toBe('ünïcødé-名前.json')
  })

  test('crafted shards outside cairn layout are left to the generic read, which reads or refuses them as before', () => {
    const honest = [link('1', 1), link('5', 2), { hash: file(3).bytes, name: name('A', '') }]
    const own = (links: RawLink[]) => pbNode(links, hamtData(bitmapOf(links)))
    const v0 = CID.createV0(CID.parse(file(4).toString()).multihash as never)
    const sha512 = CID.createV1(raw.code, { code: 0x13, size: 64, digest: new Uint8Array(64), bytes: Uint8Array.from([0x13, 0x40, ...new Uint8Array(64)]) })
    const cbor = CID.createV1(0x71, CID.parse(file(5).toString()).multihash)
    const cases: Array<[string, Uint8Array]> = [
      // the data says what the node is: a plain directory whose names start like labels is no shard
      ['plain directory data', pbNode(honest, new UnixFS({ type: 'directory' }).marshal())],
      ['fanout 256 data', pbNode(honest, hamtData(bitmapOf(honest), 256))],
      ['a file node', pbNode(honest, new UnixFS({ type: 'file', data: Uint8Array.from([1]) }).marshal())],
      ['no data', pbNode(honest, null)],
      ['slots out of order', own([link('5', 1), link('1', 2)])],
      ['a slot twice', own([link('3', 1), link('3', 2)])],
      ['a lowercase label', pbNode([link('a', 1)], hamtData(1 << 10))],
      ['a label that is no hex digit', pbNode([link('G', 1)], hamtData(1))],
      ['an empty name', pbNode([{ hash: file(1).bytes, name: [] }], hamtData(1))],
      ['a CIDv0 link', own([{ hash: v0.bytes, name: name('2') }])],
      ['a sha2-512 link', own([{ hash: sha512.bytes, name: name('2') }])],
      ['a dag-cbor link', own([{ hash: cbor.bytes, name: name('2') }])],
      ['a 36-byte hash that is no CID', own([{ hash: Uint8Array.from([0x01, 0x55, 0x12, 0x21, ...new Uint8Array(32)]), name: name('2') }])],
      ['a name that is not UTF-8', own([{ hash: file(1).bytes, name: [0x32, 0xff, 0xfe, 0x41] }])],
      ['no Tsize', own([{ ...link('2', 1), tsize: null }])],
      ['a Tsize of 2^53', own([{ ...link('2', 1), tsize: varint(2 ** 53) }])],
      ['a Tsize with a padded varint', own([{ ...link('2', 1), tsize: [0x85, 0x80, 0x00] }])],
      ['a link with another field', own([{ ...link('2', 1), extra: [0x20, 0x01] }])],
      ['a bitmap that does not match the links', pbNode(honest, hamtData(0xffff))],
      ['another hash type', pbNode(honest, hamtData(bitmapOf(honest), 16, 0x11n))],
      ['the data under another field number', Uint8Array.from([...own(honest).subarray(0, own(honest).length - hamtData(bitmapOf(honest)).length - 2), ...field(0x22, hamtData(bitmapOf(honest)))])],
      ['bytes after the data', pbNode(honest, hamtData(bitmapOf(honest)), [0x12, 0x00])],
      ['a truncated link', own(honest).subarray(0, 30)],
      ['a link longer than the block', Uint8Array.from([0x12, 0x7f, 0x0a, 0x24, ...file(1).bytes])],
      ['the data before the links', Uint8Array.from([...field(0x0a, hamtData(bitmapOf(honest))), ...own(honest).subarray(0, own(honest).length - hamtData(bitmapOf(honest)).length - 2)])]
    ]
    expect(readOwnDirectoryNode(own(honest))).toBeDefined()
    for (const [what, bytes] of cases) {
      expect({ what, own: readOwnDirectoryNode(bytes) }).toEqual({ what, own: undefined })
      expect({ what, read: outcome(readDirectoryNode, bytes) }).toEqual({ what, read: outcome(decodeDirectoryNode, bytes) })
    }
  })

  test('any bytes near a cairn shard read the same as the generic read gives (or are refused the same way)', async () => {
    const entries = Array.from({ length: 40 }, (_, i) => ({ name: `${String(i).padStart(12, '0')}-x.json`, cid: file(i), size: 100 + i }))
    const dir = await shardedDirectory(entries)
    const blocks = [dir.root, ...dir.blocks].map((b) => b.bytes)
    const mutation = fc.record({
      block: fc.nat(blocks.length - 1),
      at: fc.nat(),
      kind: fc.constantFrom('set', 'insert', 'delete', 'cut'),
      byte: fc.constantFrom(0x00, 0x01, 0x0a, 0x12, 0x18, 0x24, 0x30, 0x41, 0x46, 0x47, 0x55, 0x70, 0x7f, 0x80, 0xff)
    })
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 3 }), (ms) => {
        let bytes = blocks[ms[0].block]
        for (const m of ms) {
          const at = m.at % (bytes.length + 1)
          const b = Array.from(bytes)
          if (m.kind === 'set' && at < b.length) b[at] = m.byte
          if (m.kind === 'insert') b.splice(at, 0, m.byte)
          if (m.kind === 'delete') b.splice(at, 1)
          if (m.kind === 'cut') b.length = at
          bytes = Uint8Array.from(b)
        }
        expect(outcome(readDirectoryNode, bytes)).toEqual(outcome(decodeDirectoryNode, bytes))
      }),
      { numRuns: 3000, seed: 24 }
    )
  })
})
