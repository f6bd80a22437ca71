import { describe, expect, test } from 'bun:test'
import { CID } from 'multiformats/cid'
import { identity } from 'multiformats/hashes/identity'
import * as raw from 'multiformats/codecs/raw'
import { waitFor } from '../../src/node/events.ts'
import { fileName } from '../../src/model/layout.ts'
import { eventFile, forger, headOf, honestTree, put, seqsOf, uuid, victim } from './walkForge.ts'

describe('adversary: a link with a CID of a megabyte', () => {
  test('an event file linked by a 1 MiB identity CID is refused (quarantined) and the walk completes', async () => {
    const p = await forger()
    const v = await victim([p])
    const a = await eventFile(p, 1)
    // An identity CID's digest is the block: a member chooses its length, here 1 MiB under a small link size.
    const long = CID.createV1(raw.code, identity.digest(new Uint8Array(1024 * 1024).fill(0x61)))
    put(p, { cid: long, bytes: long.multihash.digest })
    const b = { name: fileName(2, uuid()), cid: long, size: 100 }
    const idle = waitFor(v.events, 'sync:idle', { signal: AbortSignal.timeout(30_000) })
    await v.syncer.offerHead(await headOf(p, 2, await honestTree(p, [a, b])))
    await idle
    const row = v.store.producers.get(p.id)
    expect({ error: row?.last_error ?? null, processed: row?.processed_seq, seqs: seqsOf(v.store, p.id) }).toEqual({ error: null, processed: 2, seqs: [1] })
    const quarantined = v.store.db.all<{ path: string; reason: string; cid: string | null }>('SELECT path, reason, cid FROM quarantine WHERE producer = ?', [p.id])
    // the CID is left out of the entry: kept whole, each such refusal would store 1.6 MB
    expect(quarantined.map((q) => [q.path, q.cid])).toEqual([[`2026-01-01/12/${b.name}`, null]])
    await v.syncer.stop()
  }, 60_000)

  test('a file named with half a megabyte is refused, and its quarantine entry holds a bounded part of the name', async () => {
    const p = await forger()
    const v = await victim([p])
    const a = await eventFile(p, 1)
    const junk = { name: `${'j'.repeat(512 * 1024)}.json`, cid: a.cid, size: a.size }
    const idle = waitFor(v.events, 'sync:idle', { signal: AbortSignal.timeout(30_000) })
    await v.syncer.offerHead(await headOf(p, 1, await honestTree(p, [a, junk])))
    await idle
    expect(seqsOf(v.store, p.id)).toEqual([1])
    const [entry] = v.store.db.all<{ reason: string; path: number; detail: number }>('SELECT reason, length(path) AS path, length(detail) AS detail FROM quarantine WHERE producer = ?', [p.id])
    expect({ reason: entry.reason, bounded: entry.path <= 1024 && entry.detail <= 1024 }).toEqual({ reason: 'name_mismatch', bounded: true })
    await v.syncer.stop()
  }, 60_000)
})
