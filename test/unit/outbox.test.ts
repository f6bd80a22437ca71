import * as dagPb from '@ipld/dag-pb'
import { describe, expect, test } from 'bun:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { openBlockDatabase, SqliteBlockstore } from '../../src/store/blockstore.ts'
import type { Outbox } from '../../src/publish/outbox.ts'
import type { PublishResult } from '../../src/model/publishRequest.ts'
import type { Issue } from '../../src/model/issues.ts'
import { testOutbox } from '../helpers/outbox.ts'
import { CairnEventBus } from '../../src/node/events.ts'
import { KEEP_BYTES, KEEP_SHARDS, ShardedDirectory, readDirectoryNode, shardedDirectory } from '../../src/unixfs/hamt.ts'
import { ShardUnreadableError } from '../../src/errors.ts'
import { fileBlock } from '../../src/unixfs/tree.ts'
import { CID } from 'multiformats/cid'
import { verifyHeadMessage } from '../../src/model/head.ts'
import { jsonDepth } from '../../src/model/canonical.ts'

async function outbox(onCommit?: () => void): Promise<Outbox> {
  const key = await generateKeyPair('Ed25519')
  const db = await openDatabase(':memory:')
  migrate(db)
  const blocks = new SqliteBlockstore(await openBlockDatabase(':memory:'))
  const events = new CairnEventBus()
  if (onCommit != null) events.addEventListener('outbox:committed', onCommit)
  return testOutbox({ db, blocks, privateKey: key, maxBatch: 100, maxEventSize: 4096, maxDepth: 16, events })
}

describe('the outbox', () => {
  test('a payload nests at most max-depth - 1 levels: its event file, which peers check, is one level more', async () => {
    const o = await outbox()
    const nested = (levels: number): unknown => (levels === 1 ? { leaf: true } : { down: nested(levels - 1) })
    await expect(o.publish({ type: 'test.deep', payload: nested(16) })).rejects.toThrow('payload: nests more than 15 levels')
    const ok = await o.publish({ type: 'test.deep', payload: nested(15) })
    expect(jsonDepth({ event_id: ok.event_id, payload: nested(15) })).toBe(16)
  })

  test('publishes one after another each resolve, with seq 1, 2, 3 …', async () => {
    const o = await outbox()
    const seqs: number[] = []
    for (let i = 0; i < 20; i++) seqs.push((await o.publish({ type: 'test.seq', payload: { i } })).seq)
    expect(seqs).toEqual(Array.from({ length: 20 }, (_, i) => i + 1))
  })

  test('concurrent publishes are group-committed with no holes in seq; a retried key replays its first result, the same key with another request is refused', async () => {
    const o = await outbox()
    const results = await Promise.allSettled([
      ...Array.from({ length: 250 }, async (_, i) => await o.publish({ type: 'test.group', payload: { i } })),
      o.publish({ type: 'test.group', payload: { dup: 1 }, event_id: 'order-123' }),
      o.publish({ type: 'test.group', payload: { dup: 1 }, event_id: 'order-123' }),
      o.publish({ type: 'test.group', payload: { dup: 2 }, event_id: 'order-123' })
    ])
    const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
    expect(ok.map((r) => r.seq).sort((a, b) => a - b)).toEqual([...Array.from({ length: 251 }, (_, i) => i + 1), 251].sort((a, b) => a - b))
    const [first, retry] = [results[250], results[251]].map((r) => (r as PromiseFulfilledResult<PublishResult>).value)
    expect(retry).toEqual({ ...first, replayed: true })
    expect(first.replayed).toBe(false)
    expect(results[252]).toMatchObject({ status: 'rejected', reason: { name: 'IdempotencyConflictError', eventId: first.event_id } })
    // An omitted version is version 1: the same request.
    expect(await o.publish({ type: 'test.group', payload: { dup: 1 }, version: 1, event_id: 'order-123' })).toEqual({ ...first, replayed: true })
    // A key that is a UUIDv7 is the event's id.
    const id = '0190b2a4-0000-7000-8000-00000000abcd'
    expect((await o.publish({ type: 'test.group', payload: {}, event_id: id })).event_id).toBe(id)
  })

  test('a batch is one commit, results in order; a bad event or a repeated key refuses the whole batch and names its index', async () => {
    let commits = 0
    const o = await outbox(() => {
      commits++
    })
    await o.publish({ type: 'test.batch', payload: { before: true } })
    const results = await o.publishMany([
      { type: 'test.batch', payload: { i: 0 } },
      { type: 'test.batch', payload: { i: 1 }, event_id: 'line-1' },
      { type: 'test.batch', payload: { i: 2 } }
    ])
    expect(results.map((r) => [r.seq, r.replayed])).toEqual([
      [2, false],
      [3, false],
      [4, false]
    ])
    expect(commits).toBe(2)
    // Published again, the batch's key returns the first result, flagged, and adds nothing.
    expect((await o.publishMany([{ type: 'test.batch', payload: { i: 1 }, event_id: 'line-1' }]))[0]).toEqual({ ...results[1], replayed: true })
    await expect(o.publishMany([{ type: 'test.batch', payload: { i: 9 }, event_id: 'line-1' }])).rejects.toThrow(`was used for event ${results[1].event_id}`)
    // Under a request key, event i has the key KEY#i.
    const keyed = await o.publishMany([{ type: 'test.batch', payload: { k: 0 } }], 'req-7')
    expect((await o.publishMany([{ type: 'test.batch', payload: { k: 0 } }], 'req-7'))[0]).toEqual({ ...keyed[0], replayed: true })
    expect(o.seq).toBe(5)

    const repeated = o.publishMany([
      { type: 'test.batch', payload: { a: 1 }, event_id: 'same' },
      { type: 'test.batch', payload: { a: 2 }, event_id: 'same' }
    ])
    await expect(repeated).rejects.toThrow('[1].event_id: repeats the idempotency key of [0]')
    // Under a request key, an event's own event_id may spell another's implied key KEY#i: refused, nothing published.
    await expect(
      o.publishMany(
        [
          { type: 'test.batch', payload: { a: 1 }, event_id: 'req-8#1' },
          { type: 'test.batch', payload: { a: 2 } }
        ],
        'req-8'
      )
    ).rejects.toThrow('[1]: repeats the idempotency key of [0] ("req-8#1": the Idempotency-Key header and its index)')
    await expect(
      o.publishMany(
        [
          { type: 'test.batch', payload: { a: 1 } },
          { type: 'test.batch', payload: { a: 1 }, event_id: 'req-8#0' }
        ],
        'req-8'
      )
    ).rejects.toThrow('[1].event_id: repeats the idempotency key of [0]')
    const bad = o.publishMany([
      { type: 'test.batch', payload: { ok: 1 } },
      { type: 'Not A Type', payload: {} }
    ])
    await expect(bad).rejects.toThrow('event [1]')
    await bad.catch((err: { issues: Issue[] }) => {
      expect(err.issues.map((i) => [i.path, i.code])).toEqual([['[1].type', 'regex']])
    })
    await expect(o.publishMany([])).rejects.toThrow('empty')
    await expect(o.publishMany(Array.from({ length: 101 }, (_, i) => ({ type: 'test.batch', payload: { i } })))).rejects.toThrow('at most 100')
    // Nothing of a refused batch was written.
    expect(o.seq).toBe(5)
  })

  test('a restarted outbox goes on from its stored shards, and rebuilds a bucket whose shards are gone', async () => {
    const key = await generateKeyPair('Ed25519')
    const db = await openDatabase(':memory:')
    migrate(db)
    const blocks = new SqliteBlockstore(await openBlockDatabase(':memory:'))
    const open = (): Outbox => testOutbox({ db, blocks, privateKey: key, maxBatch: 1000, maxEventSize: 4096, maxDepth: 16, now: () => new Date('2026-11-23T10:15:00Z') })
    const events = (from: number, n: number): unknown[] => Array.from({ length: n }, (_, i) => ({ type: 'test.restart', payload: { i: from + i } }))
    /** the bucket's root, checked against one built from scratch of the outbox table, and all its shards */
    const bucket = async (): Promise<string[]> => {
      const root = db.get<{ cid: string }>("SELECT cid FROM outbox_dirs WHERE path = '2026-11-23/10'")!.cid
      const rows = db.all<{ name: string; cid: string; size: number }>('SELECT name, cid, size FROM outbox')
      expect(root).toBe((await shardedDirectory(rows.map((r) => ({ name: r.name, cid: CID.parse(r.cid), size: r.size })))).root.cid.toString())
      const shards: string[] = []
      const walk = (cid: CID): void => {
        const bytes = blocks.getSync(cid)
        expect(bytes).toBeDefined()
        shards.push(cid.toString())
        for (const s of readDirectoryNode(bytes!).shards) walk(s.cid)
      }
      walk(CID.parse(root))
      return shards
    }
    await open().publishMany(events(0, 600))
    await bucket()
    // Restarted: the bucket is opened at its stored root and read back shard by shard.
    await open().publishMany(events(600, 600))
    const shards = await bucket()
    // A shard on the way lost (blocks.db restored from an older backup): the next commit rebuilds the
    // bucket from the outbox table, and its tree is whole again. (`cairn doctor` finds lost blocks elsewhere.)
    blocks.delete(CID.parse(shards[0]))
    const third = open()
    await third.publish({ type: 'test.restart', payload: { i: 1200 } })
    expect(third.seq).toBe(1201)
    await bucket()
  })

  test('an incrementally updated HAMT has the same CIDs and size as one built from scratch', async () => {
    const entries = await Promise.all(
      Array.from({ length: 3000 }, async (_, i) => {
        const b = await fileBlock(new TextEncoder().encode(String(i)))
        return { name: `${String(i).padStart(12, '0')}-x.json`, cid: b.cid, size: b.bytes.length }
      })
    )
    // Root CIDs and sizes that the previous implementation (hamt-sharding's buckets) built for these entries:
    // the shape and bytes must not change, or peers would see every bucket as new.
    const golden: Array<[number, number, string, number]> = [
      [0, 1, 'bafybeidhwl7lj373m4zrz4vdbke6zvbxtxy5hqqduefzdqtbcupyzpbaf4', 77],
      [0, 2, 'bafybeicfeofg5ozirda3rupoqsyrxlknvwbeti6r53wmkqne3epbosjlem', 142],
      [0, 17, 'bafybeiewx3srnoomu43sfh6wmjaiuyq74qnbfjlakwrwumerdmqw43cohq', 1414],
      [5, 300, 'bafybeifbz6plirr6kgugzgahucccydujclb5v6weheiaiki2btpigkqnwe', 25808],
      [1000, 3000, 'bafybeie2jqorutfs5cvivwt6nrf5z25xivuezrc5wtvjq76dekmw6cbz5m', 175525],
      [0, 3000, 'bafybeickunpmra7dug7bwaxgd24svhws2pg7rrxursjanv3cpa4al26raa', 262081]
    ]
    for (const [from, to, cid, size] of golden) {
      const { root } = await shardedDirectory(entries.slice(from, to))
      expect([from, to, root.cid.toString(), root.size]).toEqual([from, to, cid, size])
    }

    // Shards are encoded by hand: each is the bytes @ipld/dag-pb gives for the same node (names beyond ASCII too).
    const wide = await shardedDirectory([...entries.slice(0, 600), { name: 'ünïcødé-名前.json', cid: entries[0].cid, size: 300_000 }])
    for (const b of [...wide.blocks, wide.root]) expect(dagPb.encode(dagPb.decode(b.bytes))).toEqual(b.bytes)

    // Kept in memory (no store), and backed by a store: deep shards beyond the budget (all of them with
    // none, some with a small one) are dropped after each flush and read back.
    const store = new Map<string, Uint8Array>()
    const read = (cid: CID): Uint8Array | undefined => store.get(cid.toString())
    type Counted = { deep: number; deepBytes: number }
    const counted = (dir: ShardedDirectory): number[] => [(dir as unknown as Counted).deep, (dir as unknown as Counted).deepBytes]
    for (const [dir, keep, keepBytes] of [
      [new ShardedDirectory(), Infinity, Infinity],
      [new ShardedDirectory({ read }), KEEP_SHARDS, KEEP_BYTES],
      [new ShardedDirectory({ read, keep: 0 }), 0, KEEP_BYTES],
      [new ShardedDirectory({ read, keep: 8 }), 8, KEEP_BYTES],
      [new ShardedDirectory({ read, keepBytes: 3000 }), KEEP_SHARDS, 3000]
    ] as const) {
      for (let i = 0; i < entries.length; i += 500) {
        dir.add(entries.slice(i, i + 500))
        const { root, blocks } = await dir.flush()
        expect(dir.deepShards).toBeLessThanOrEqual(keep)
        expect(dir.deepShardBytes).toBeLessThanOrEqual(keepBytes)
        // The counts the budget is kept by, kept as shards are read, made and dropped, are the real ones.
        if (keep !== Infinity) expect(counted(dir)).toEqual([dir.deepShards, dir.deepShardBytes])
        for (const b of blocks) store.set(b.cid.toString(), b.bytes)
        const scratch = (await shardedDirectory(entries.slice(0, i + 500))).root
        expect([root.cid.toString(), root.size]).toEqual([scratch.cid.toString(), scratch.size])
        expect(dir.size).toBe(i + 500)
      }
      dir.add(entries.slice(0, 10))
      dir.remove([...entries.slice(0, 1000).map((e) => e.name), 'not-there.json'])
      expect(dir.size).toBe(2000)
      const { root, blocks } = await dir.flush()
      for (const b of blocks) store.set(b.cid.toString(), b.bytes)
      expect(root.cid.toString()).toBe(golden[4][2])
      if (keep !== Infinity) expect(counted(dir)).toEqual([dir.deepShards, dir.deepShardBytes])
      // Removing all but one entry, one at a time, collapses every level back into the root.
      dir.remove(entries.slice(1000, 2999).map((e) => e.name))
      expect((await dir.flush()).root.cid.toString()).toBe((await shardedDirectory(entries.slice(2999))).root.cid.toString())
      if (keep !== Infinity) expect([...counted(dir), dir.deepShards]).toEqual([0, 0, 0])
    }

    // Reopened at a stored root: it reads what it needs and gets the same CIDs as one built from scratch.
    const built = new ShardedDirectory({ read })
    built.add(entries.slice(0, 2000))
    const first = await built.flush()
    for (const b of first.blocks) store.set(b.cid.toString(), b.bytes)
    const reopened = new ShardedDirectory({ root: first.root, count: 2000, read })
    reopened.add(entries.slice(2000))
    reopened.remove(entries.slice(0, 1000).map((e) => e.name))
    expect(reopened.size).toBe(2000)
    const { root, blocks } = await reopened.flush()
    expect(root.cid.toString()).toBe(golden[4][2])
    // Shards read back the quick way (ASCII names) and the full way (others) give the same directory.
    const unicode = { name: 'ünïcødé-名前.json', cid: entries[0].cid, size: 300_000 }
    const mixed = new ShardedDirectory({ read, keep: 0 })
    mixed.add([...entries.slice(0, 1500), unicode])
    const before = await mixed.flush()
    for (const b of before.blocks) store.set(b.cid.toString(), b.bytes)
    const mixedAgain = new ShardedDirectory({ root: before.root, count: 1501, read, keep: 0 })
    expect(mixedAgain.get(unicode.name)?.cid.toString()).toBe(unicode.cid.toString())
    expect(mixedAgain.get(entries[7].name)?.cid.toString()).toBe(entries[7].cid.toString())
    mixedAgain.add(entries.slice(1500, 2000))
    mixedAgain.remove([entries[3].name])
    const after = (await mixedAgain.flush()).root
    const fromScratch = (await shardedDirectory([...entries.slice(0, 3), ...entries.slice(4, 2000), unicode])).root
    expect([after.cid.toString(), after.size]).toEqual([fromScratch.cid.toString(), fromScratch.size])

    // Only the changed shards are new blocks, and a shard missing from the store is named.
    expect(blocks.length).toBeLessThan(first.blocks.length)
    const lost = new ShardedDirectory({ root: first.root, count: 2000, read: () => undefined })
    expect(() => {
      lost.add(entries.slice(2000, 2001))
    }).toThrow(ShardUnreadableError)
    expect(() => {
      lost.add(entries.slice(2000, 2001))
    }).toThrow(`HAMT shard ${first.root.cid.toString()} is not in the block store`)
  })
})

describe('compaction in the head', () => {
  test('each head counts the files compacted out of the tree so far, across a restart, and plain prunes do not count', async () => {
    const key = await generateKeyPair('Ed25519')
    const db = await openDatabase(':memory:')
    migrate(db)
    const blocks = new SqliteBlockstore(await openBlockDatabase(':memory:'))
    const open = () => testOutbox({ db, blocks, privateKey: key, maxBatch: 100, maxEventSize: 4096, maxDepth: 16 })
    const o = open()
    for (let i = 0; i < 5; i++) await o.publish({ type: 'test.compact', payload: { i } })
    const compactedIn = async (head: Uint8Array | undefined): Promise<number | undefined> => (await verifyHeadMessage(head!)).head.compacted
    expect(await compactedIn((await o.prune([1, 2], new Set([1]))).head)).toBe(1)
    expect(await compactedIn((await o.prune([3, 4], new Set([3, 4]))).head)).toBe(3)
    const again = open()
    await again.publish({ type: 'test.compact', payload: { i: 5 } })
    expect(await compactedIn((await again.prune([5], new Set())).head)).toBe(3)
  })
})
