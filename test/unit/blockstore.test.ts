import { describe, expect, test } from 'bun:test'
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { identity } from 'multiformats/hashes/identity'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { blockKey, openBlockDatabase, SqliteBlockstore } from '../../src/store/blockstore.ts'
import { directoryBlock, fileBlockSync, type Block } from '../../src/unixfs/tree.ts'

/** A temp directory removed when the test's scope ends. */
function tempDir(): { path: string } & Disposable {
  const path = mkdtempSync(join(tmpdir(), 'cairn-blockstore-'))
  return { path, [Symbol.dispose]: () => rmSync(path, { recursive: true, force: true }) }
}

/** `n` event files and a directory of them: raw and dag-pb blocks, as cairn stores them. */
async function someBlocks(n: number): Promise<Block[]> {
  const files = Array.from({ length: n }, (_, i) => fileBlockSync(new TextEncoder().encode(`{"i":${i}}`)))
  const dir = await directoryBlock(files.slice(0, 50).map((f, i) => ({ name: `${i}.json`, cid: f.cid, size: f.bytes.length })))
  return [...files, dir]
}

/** Writes `blocks` into a blocks.db in the format of cairn before the integer key: keyed by the CID's string. */
async function legacyFile(path: string, blocks: Block[], withoutRowid = false): Promise<void> {
  const db = await openDatabase(path)
  db.exec(`PRAGMA auto_vacuum = INCREMENTAL; PRAGMA journal_mode = WAL;
    CREATE TABLE blocks (cid TEXT PRIMARY KEY, bytes BLOB NOT NULL)${withoutRowid ? ' WITHOUT ROWID' : ''}`)
  db.transaction(() => {
    for (const b of blocks) db.run('INSERT INTO blocks (cid, bytes) VALUES (?, ?)', [b.cid.toString(), b.bytes])
  })
  db.close()
}

/** Every stored block's CID string and bytes, from the GC's listing and a look-up by CID. */
function contents(blocks: SqliteBlockstore): Map<string, Uint8Array | undefined> {
  const out = new Map<string, Uint8Array | undefined>()
  for (let after: number | undefined = 0; after != null; ) {
    const page = blocks.sizesPage(after, 700, blocks.lastPosition())
    for (const r of page.rows) out.set(r.cid, blocks.getSync(CID.parse(r.cid)))
    after = page.next
  }
  return out
}

const expected = (blocks: Block[]): Map<string, Uint8Array> => new Map(blocks.map((b) => [b.cid.toString(), b.bytes]))

describe('the block store', () => {
  for (const withoutRowid of [false, true]) {
    test(`a blocks.db of the earlier format${withoutRowid ? ' without rowid' : ''} is converted at open, and every block is found`, async () => {
      using tmp = tempDir()
      const path = join(tmp.path, 'blocks.db')
      const old = await someBlocks(2500)
      await legacyFile(path, old, withoutRowid)
      const blocks = new SqliteBlockstore(await openBlockDatabase(path))
      try {
        expect(blocks.db.all<{ name: string }>('PRAGMA table_info(blocks)').map((c) => c.name)).toEqual(['k', 'cid', 'bytes'])
        expect(blocks.count()).toBe(old.length)
        expect(contents(blocks)).toEqual(expected(old))
        expect(old.every((b) => blocks.has(b.cid))).toBe(true)
        const [extra] = await someBlocks(1).then((bs) => bs.map((b) => fileBlockSync(new TextEncoder().encode(`new ${b.cid}`))))
        expect(blocks.has(extra.cid)).toBe(false)
        blocks.putSync(extra.cid, extra.bytes)
        expect(blocks.getSync(extra.cid)).toEqual(extra.bytes)
      } finally {
        blocks.db.close()
      }
      // Opened again, it is not converted twice.
      const again = new SqliteBlockstore(await openBlockDatabase(path))
      expect(again.count()).toBe(old.length + 1)
      again.db.close()
    })
  }

  test('an unconverted file opened read-only by another process is read as it is, and refuses writes', async () => {
    using tmp = tempDir()
    const path = join(tmp.path, 'blocks.db')
    const old = await someBlocks(30)
    await legacyFile(path, old)
    const blocks = new SqliteBlockstore(await openDatabase(path, { readonly: true }))
    try {
      expect(contents(blocks)).toEqual(expected(old))
      expect(blocks.getSync(old[3].cid)).toEqual(old[3].bytes)
      expect(() => blocks.putSync(old[0].cid, old[0].bytes)).toThrow(/earlier cairn's format; start cairn on this data directory once to convert it/)
    } finally {
      blocks.db.close()
    }
  })

  test('a reader that opened an unconverted file reads it in its new format once a node converted it (cairn doctor beside a first start)', async () => {
    using tmp = tempDir()
    const path = join(tmp.path, 'blocks.db')
    const old = await someBlocks(30)
    await legacyFile(path, old)
    const reader = new SqliteBlockstore(await openDatabase(path, { readonly: true }))
    try {
      // The node's first start converts the file while the reader (doctor) checks its integrity.
      ;(await openBlockDatabase(path)).close()
      const snapshot = reader.readSnapshot()
      try {
        expect(old.filter((b) => reader.getSync(b.cid) == null).map((b) => b.cid.toString())).toEqual([])
      } finally {
        snapshot.end()
      }
    } finally {
      reader.db.close()
    }
  })

  test('a file whose conversion fails is left as it was, with an error naming the bad key', async () => {
    using tmp = tempDir()
    const path = join(tmp.path, 'blocks.db')
    const old = await someBlocks(1500)
    await legacyFile(path, old)
    const raw = await openDatabase(path)
    raw.run('INSERT INTO blocks (cid, bytes) VALUES (?, ?)', ['not-a-cid', new Uint8Array([1])])
    raw.close()
    const err = await openBlockDatabase(path).catch((e: Error) => e)
    expect(err).toBeInstanceOf(Error)
    expect((err as Error).name).toBe('DataDirError')
    expect((err as Error).message).toMatch(
      /^Cannot convert .*blocks\.db: a block is stored under "not-a-cid", which is no CID .*; the file is left as it was: restore it and cairn.db from the same backup/
    )
    const after = await openDatabase(path, { readonly: true })
    expect(after.get<{ n: number }>('SELECT count(*) AS n FROM blocks')?.n).toBe(old.length + 1)
    expect(after.all<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'").map((t) => t.name)).toEqual(['blocks'])
    after.close()
  })

  test('blocks whose keys collide are told apart by their CIDs', async () => {
    const blocks = new SqliteBlockstore(await openBlockDatabase(':memory:'))
    // Two sha2-256 CIDs whose digests end alike (an attacker can find such a pair with 2^24 hashes), and an
    // identity CID shorter than the key.
    const digest = (first: number): Uint8Array => Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? first : 7))
    const a = CID.createV1(0x55, Digest.create(0x12, digest(1)))
    const b = CID.createV1(0x55, Digest.create(0x12, digest(2)))
    const short = CID.createV1(0x55, identity.digest(new Uint8Array([9])))
    expect(blockKey(a.bytes)).toBe(blockKey(b.bytes))
    blocks.putSync(a, new Uint8Array([1]))
    expect(blocks.has(b)).toBe(false)
    blocks.putSync(b, new Uint8Array([2]))
    blocks.putSync(short, new Uint8Array([9]))
    blocks.putSync(a, new Uint8Array([1]))
    expect([blocks.getSync(a), blocks.getSync(b), blocks.getSync(short), blocks.count()]).toEqual([new Uint8Array([1]), new Uint8Array([2]), new Uint8Array([9]), 3])
    blocks.delete(a)
    expect([blocks.has(a), blocks.getSync(b)]).toEqual([false, new Uint8Array([2])])
    expect([...blocks.getAll()].map((p) => p.cid.toString()).sort()).toEqual([b.toString(), short.toString()].sort())
    blocks.db.close()
  })

  test('a member cannot make many blocks share one key: one block under many codecs (what a hash check accepts) gets a key each', async () => {
    const blocks = new SqliteBlockstore(await openBlockDatabase(':memory:'))
    try {
      const bytes = new TextEncoder().encode('{"x":1}')
      const digest = Digest.create(0x12, new Uint8Array(createHash('sha256').update(bytes).digest()))
      // A walk fetches and stores the block of any link whose sha2-256 digest matches; the codec is the linker's choice.
      const cids = [CID.createV0(digest), ...Array.from({ length: 2000 }, (_, i) => CID.createV1(i === 0 ? 0x55 : i === 1 ? 0x70 : 0x300000 + i, digest))]
      blocks.putAll(cids.map((cid) => ({ cid, bytes })))
      const most = blocks.db.get<{ n: number }>('SELECT max(n) AS n FROM (SELECT count(*) AS n FROM blocks GROUP BY k)')?.n
      // cairn's own forms (CIDv0, CIDv1 raw and dag-pb) share the digest's key; each other CID has one of its own.
      expect({ rows: blocks.count(), most, found: cids.every((c) => blocks.has(c)) }).toEqual({ rows: cids.length, most: 3, found: true })
      blocks.remove(cids.slice(3).map((c) => c.toString()))
      expect(blocks.count()).toBe(3)
    } finally {
      blocks.db.close()
    }
  })

  test("a file keyed by the CIDs' last bytes alone is read by a CLI verb as it is and keyed again at the node's next start", async () => {
    using tmp = tempDir()
    const path = join(tmp.path, 'blocks.db')
    const own = fileBlockSync(new TextEncoder().encode('{"own":1}'))
    const foreign = CID.createV1(0x71, own.cid.multihash)
    // As the build of one day wrote it: every key the CID's last 6 bytes, and no application_id.
    const before = await openDatabase(path)
    before.exec(`PRAGMA journal_mode = WAL; CREATE TABLE blocks (k INTEGER NOT NULL, cid BLOB NOT NULL, bytes BLOB NOT NULL); CREATE INDEX blocks_k ON blocks (k)`)
    const tail = (c: CID): number => Number.parseInt(Buffer.from(c.bytes.subarray(-6)).toString('hex'), 16) - 2 ** 47
    for (const c of [own.cid, foreign]) before.run('INSERT INTO blocks (k, cid, bytes) VALUES (?, ?, ?)', [tail(c), c.bytes, own.bytes])
    before.close()
    const reader = new SqliteBlockstore(await openDatabase(path, { readonly: true }))
    try {
      expect([reader.has(own.cid), reader.has(foreign)]).toEqual([true, true])
      const node = new SqliteBlockstore(await openBlockDatabase(path))
      try {
        expect([node.has(own.cid), node.has(foreign), node.db.get<{ k: number }>('SELECT k FROM blocks WHERE cid = ?', [foreign.bytes])?.k]).toEqual([true, true, blockKey(foreign.bytes)])
        node.remove([foreign.toString()])
        expect(node.count()).toBe(1)
      } finally {
        node.db.close()
      }
      const snapshot = reader.readSnapshot()
      expect([reader.has(own.cid), reader.has(foreign)]).toEqual([true, false])
      snapshot.end()
    } finally {
      reader.db.close()
    }
  })

  test("the listing names blocks by their CIDs' strings, version 0 included, and removes by them", async () => {
    const blocks = new SqliteBlockstore(await openBlockDatabase(':memory:'))
    const [file, dir] = await someBlocks(1)
    const v0 = dir.cid.toV0()
    blocks.putAll([file, dir, { cid: v0, bytes: dir.bytes }])
    const listed = blocks.sizes().map((r) => r.cid)
    expect(listed).toEqual([file.cid.toString(), dir.cid.toString(), v0.toString()])
    expect(v0.toString()).toStartWith('Qm')
    blocks.remove([v0.toString(), file.cid.toString()])
    expect([blocks.has(file.cid), blocks.has(dir.cid), blocks.has(v0)]).toEqual([false, true, false])
    expect(() => blocks.remove(['not a cid'])).toThrow()
    blocks.db.close()
  })

  test('a look-up uses the key index', async () => {
    const blocks = new SqliteBlockstore(await openBlockDatabase(':memory:'))
    const [blk] = await someBlocks(1)
    const plan = blocks.db.all<{ detail: string }>('EXPLAIN QUERY PLAN SELECT bytes FROM blocks WHERE k = ? AND cid = ?', [blockKey(blk.cid.bytes), blk.cid.bytes])
    expect(plan.map((p) => p.detail)).toEqual(['SEARCH blocks USING INDEX blocks_k (k=?)'])
    blocks.db.close()
  })
})
