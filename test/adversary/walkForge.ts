import * as dagPb from '@ipld/dag-pb'
import type { PrivateKey } from '@libp2p/interface'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { canonicalJson } from '../../src/model/canonical.ts'
import { signHead } from '../../src/model/head.ts'
import { fileName } from '../../src/model/layout.ts'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { Store } from '../../src/store/store.ts'
import { syncer as createSyncer, type Syncer, type SyncerInit } from '../../src/sync/syncer.ts'
import { HybridClock } from '../../src/model/hlc.ts'
import { CairnEventBus } from '../../src/node/events.ts'
import { Metrics } from '../../src/metrics/metrics.ts'
import { type Log, silentLog } from '../../src/log/logger.ts'
import { directoryBlock, fileBlock, type DirEntry } from '../../src/unixfs/tree.ts'
import { shardedDirectory } from '../../src/unixfs/hamt.ts'
import { mintProducer } from './helpers.ts'

/** A producer forged in the test: its key, its peer id and the blocks it serves. */
export interface Forger {
  key: PrivateKey
  id: string
  blocks: Map<string, Uint8Array>
  /** the last hlc it signed, so that each head is newer */
  hlc: number
}

export async function forger(): Promise<Forger> {
  return { ...(await mintProducer()), blocks: new Map(), hlc: Date.now() }
}

export function put(p: Forger, block: { cid: CID; bytes: Uint8Array }): CID {
  p.blocks.set(block.cid.toString(), block.bytes)
  return block.cid
}

let counter = 0
/** @returns a UUIDv7 that is unique in this process */
export function uuid(): string {
  const n = (counter++).toString(16).padStart(12, '0')
  const r = Math.floor(Math.random() * 0xfff)
    .toString(16)
    .padStart(3, '0')
  return `01900000-0000-7${r}-8000-${n}`
}

/** @returns a valid event file of `p` at `seq`, stored with p's blocks, as a directory entry */
export async function eventFile(p: Forger, seq: number, eventId = uuid()): Promise<DirEntry> {
  const envelope = { event_id: eventId, type: 'test.walk', version: 1, producer: p.id, seq, hlc: `${Date.now()}-0000`, occurred_at: new Date().toISOString(), payload: { seq } }
  const bytes = new TextEncoder().encode(canonicalJson(envelope))
  const block = await fileBlock(bytes)
  put(p, block)
  return { name: fileName(seq, eventId), cid: block.cid, size: bytes.length }
}

/** @returns the root of an outbox with one day and one hour, whose bucket root is `bucket` */
export async function rootOver(p: Forger, bucket: { cid: CID; size: number }, day = '2026-01-01', hour = '12'): Promise<CID> {
  const d = await directoryBlock([{ name: hour, cid: bucket.cid, size: bucket.size }])
  put(p, d)
  const root = await directoryBlock([{ name: day, cid: d.cid, size: d.size }])
  return put(p, root)
}

/** @returns the root of an honest outbox (cairn's own HAMT writer) holding `files` in one hour bucket */
export async function honestTree(p: Forger, files: readonly DirEntry[], hour = '12'): Promise<CID> {
  const bucket = await shardedDirectory(files)
  for (const b of bucket.blocks) put(p, b)
  return await rootOver(p, { cid: bucket.root.cid, size: bucket.root.size }, '2026-01-01', hour)
}

/**
 * @returns a HAMT shard block with the given links (labels included in the names), stored with p's blocks.
 * Its bitmap says every slot is taken (`full`: the generic decoders read it), or, for fanout 16, which are
 * (`links`: the layout cairn writes, read without them).
 */
export async function rawShard(p: Forger, links: dagPb.PBLink[], fanout = 16, bitmap: 'full' | 'links' = 'full'): Promise<{ cid: CID; size: number }> {
  const bits = bitmap === 'full' ? 0xffff : links.reduce((b, l) => b | (1 << parseInt((l.Name ?? '').slice(0, 1), 16)), 0)
  const field = bits > 0xff ? [bits >> 8, bits & 0xff] : bits > 0 ? [bits] : []
  const data = new UnixFS({ type: 'hamt-sharded-directory', data: Uint8Array.from(field), fanout: BigInt(fanout), hashType: 0x22n })
  const bytes = dagPb.encode(dagPb.prepare({ Data: data.marshal(), Links: links }))
  const cid = CID.createV1(dagPb.code, await sha256.digest(bytes))
  put(p, { cid, bytes })
  return { cid, size: bytes.length + links.reduce((n, l) => n + (l.Tsize ?? 0), 0) }
}

/** @returns p's signed head for `seq` over `root` */
export async function headOf(p: Forger, seq: number, root: CID): Promise<Uint8Array> {
  p.hlc += 1
  return await signHead({ producer: p.id, seq, root: root.toString(), hlc: `${p.hlc}-0000`, acks: {} }, p.key)
}

/**
 * A victim's syncer over the blocks of `producers`, counting every block it asks for.
 *
 * @param options.before runs before each block is served: it may hold the fetch (await) or fail it (throw)
 */
export async function victim(
  producers: readonly Forger[],
  options: {
    maxFilesPerWalk?: number
    before?: (cid: CID) => void | Promise<void>
    collectGarbage?: { every: number; collect: () => void }
    log?: Log
    /** what the victim's membership says (SyncerInit's isMember, removedAt and checkEvent); everyone may write without it */
    membership?: Pick<SyncerInit, 'isMember' | 'removedAt' | 'checkEvent'>
  } = {}
): Promise<{ syncer: Syncer; store: Store; events: CairnEventBus; reads: { n: number } }> {
  const db = await openDatabase(':memory:')
  migrate(db)
  const store = new Store(db)
  const events = new CairnEventBus()
  const reads = { n: 0 }
  const syncer = createSyncer({
    getBlock: async (cid: CID) => {
      reads.n++
      await options.before?.(cid)
      for (const p of producers) {
        const b = p.blocks.get(cid.toString())
        if (b != null) return b
      }
      throw new Error(`missing ${cid}`)
    },
    limits: { maxEventSize: 256 * 1024, maxDepth: 64, maxFilesPerWalk: options.maxFilesPerWalk ?? 20_000 },
    fetchTimeout: 5000,
    collectGarbage: options.collectGarbage,
    ...options.membership
  })({ self: 'victim', store, clock: new HybridClock(), log: options.log ?? silentLog, metrics: new Metrics(), events })
  syncer.start()
  return { syncer, store, events, reads }
}

/** @returns the seqs of `producer` the victim stored, ascending */
export function seqsOf(store: Store, producer: string): number[] {
  return store.db.all<{ seq: number }>('SELECT seq FROM events WHERE producer = ? ORDER BY seq', [producer]).map((r) => r.seq)
}

/**
 * The directory bomb: `levels` HAMT shards, each linking the next one from all 16 of its slots,
 * the last holding 16 file links: 16^levels entries from levels + 1 small blocks.
 */
export async function directoryBomb(p: Forger, levels: number): Promise<CID> {
  const file = await eventFile(p, 1)
  let below = await rawShard(
    p,
    Array.from({ length: 16 }, (_, i): dagPb.PBLink => ({ Name: i.toString(16).toUpperCase() + fileName(i + 1, uuid()), Hash: file.cid, Tsize: file.size }))
  )
  for (let l = 0; l < levels; l++) {
    const shard = below
    below = await rawShard(
      p,
      Array.from({ length: 16 }, (_, i): dagPb.PBLink => ({ Name: i.toString(16).toUpperCase(), Hash: shard.cid, Tsize: shard.size }))
    )
  }
  return await rootOver(p, below)
}
