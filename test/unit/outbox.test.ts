import { describe, expect, test } from 'bun:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { openBlockDatabase, SqliteBlockstore } from '../../src/store/blockstore.ts'
import { Outbox } from '../../src/bus/outbox.ts'
import { HybridClock } from '../../src/bus/hlc.ts'
import { ShardedDirectory, shardedDirectory } from '../../src/bus/hamt.ts'
import { fileBlock } from '../../src/bus/tree.ts'

async function outbox (onCommit?: () => void): Promise<Outbox> {
  const key = await generateKeyPair('Ed25519')
  const db = await openDatabase(':memory:')
  migrate(db)
  const blocks = new SqliteBlockstore(await openBlockDatabase(':memory:'))
  return new Outbox({ db, blocks, producer: peerIdFromPrivateKey(key).toString(), privateKey: key, clock: new HybridClock(), maxBatch: 100, maxEventSize: 4096, maxDepth: 16, onCommit })
}

describe('the outbox', () => {
  test('publishes one after another each resolve, with seq 1, 2, 3 …', async () => {
    const o = await outbox()
    const seqs: number[] = []
    for (let i = 0; i < 20; i++) seqs.push((await o.publish({ type: 'test.seq', payload: { i } })).seq)
    expect(seqs).toEqual(Array.from({ length: 20 }, (_, i) => i + 1))
  })

  test('concurrent publishes are group-committed with no holes in seq, and duplicates return the first result', async () => {
    const o = await outbox()
    const id = '0190b2a4-0000-7000-8000-00000000abcd'
    const results = await Promise.all([
      ...Array.from({ length: 250 }, async (_, i) => await o.publish({ type: 'test.group', payload: { i } })),
      o.publish({ type: 'test.group', payload: { dup: 1 }, event_id: id }),
      o.publish({ type: 'test.group', payload: { dup: 2 }, event_id: id })
    ])
    expect(results.map((r) => r.seq).sort((a, b) => a - b).slice(0, 251)).toEqual(Array.from({ length: 251 }, (_, i) => i + 1))
    expect(results[250]).toEqual(results[251])
  })

  test('a batch is one commit, results in order; a bad event refuses the whole batch and names its index', async () => {
    let commits = 0
    const o = await outbox(() => { commits++ })
    await o.publish({ type: 'test.batch', payload: { before: true } })
    const id = '0190b2a4-0000-7000-8000-00000000beef'
    const results = await o.publishMany([
      { type: 'test.batch', payload: { i: 0 } },
      { type: 'test.batch', payload: { i: 1 }, event_id: id },
      { type: 'test.batch', payload: { i: 2 } },
      { type: 'test.batch', payload: { again: true }, event_id: id }
    ])
    expect(results.map((r) => r.seq)).toEqual([2, 3, 4, 3])
    expect(results[3]).toEqual(results[1])
    expect(commits).toBe(2)
    // Published again, the batch's event_id returns the first result and adds nothing.
    expect((await o.publishMany([{ type: 'test.batch', payload: {}, event_id: id }]))[0]).toEqual(results[1])
    expect(o.seq).toBe(4)

    const bad = o.publishMany([{ type: 'test.batch', payload: { ok: 1 } }, { type: 'Not A Type', payload: {} }])
    await expect(bad).rejects.toThrow('event [1]')
    await bad.catch((err: { issues: string[] }) => { expect(err.issues.every((i) => i.startsWith('[1].'))).toBe(true) })
    await expect(o.publishMany([])).rejects.toThrow('empty')
    await expect(o.publishMany(Array.from({ length: 101 }, (_, i) => ({ type: 'test.batch', payload: { i } })))).rejects.toThrow('at most 100')
    // Nothing of a refused batch was written.
    expect(o.seq).toBe(4)
  })

  test('an incrementally updated HAMT has the same CIDs and size as one built from scratch', async () => {
    const entries = await Promise.all(Array.from({ length: 3000 }, async (_, i) => {
      const b = await fileBlock(new TextEncoder().encode(String(i)))
      return { name: `${String(i).padStart(12, '0')}-x.json`, cid: b.cid, size: b.bytes.length }
    }))
    const dir = new ShardedDirectory()
    for (let i = 0; i < entries.length; i += 500) {
      await dir.add(entries.slice(i, i + 500))
      expect((await dir.flush()).root.cid.toString()).toBe((await shardedDirectory(entries.slice(0, i + 500))).root.cid.toString())
      expect(dir.size).toBe(i + 500)
    }
    await dir.add(entries.slice(0, 10))
    await dir.remove([...entries.slice(0, 1000).map((e) => e.name), 'not-there.json'])
    expect(dir.size).toBe(2000)
    expect((await dir.flush()).root.cid.toString()).toBe((await shardedDirectory(entries.slice(1000))).root.cid.toString())
  })
})
