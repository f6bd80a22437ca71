import { CID } from 'multiformats/cid'
import { OutboxBlocksLostError, ShardUnreadableError } from '../errors.ts'
import { canonicalJson } from '../model/canonical.ts'
import type { SqliteBlockstore } from '../store/blockstore.ts'
import { rowToEnvelope } from '../store/events.ts'
import type { Store } from '../store/store.ts'
import { ShardedDirectory } from '../unixfs/hamt.ts'
import { directoryBlock, fileBlock, type Block, type DirEntry } from '../unixfs/tree.ts'

/**
 * The meta key of the last seq whose commit's blocks are known to be on disk: blocks.db was synced after
 * that commit's blocks were written. Commits after it wrote their blocks without a sync of their own.
 */
const DURABLE_THROUGH_KEY = 'outbox_blocks_durable_through'

/** @returns the last seq whose commit's blocks are known durable, or undefined when never recorded */
export function blocksDurableThrough(store: Store): number | undefined {
  const v = store.meta.get(DURABLE_THROUGH_KEY)
  return v == null ? undefined : Number(v)
}

/** Records that blocks.db was synced after the blocks of every commit up to `seq` were written. */
export function markBlocksDurable(store: Store, seq: number): void {
  if (blocksDurableThrough(store) !== seq) store.meta.put(DURABLE_THROUGH_KEY, String(seq))
}

/** A block of the own tree that the block store lacks. */
export interface MissingBlock {
  /** what it is: `file of seq 12`, `shards of bucket 2026-11-29/05`, `day 2026-11-29`, `root` */
  what: string
  cid: string
}

/** What the startup check found in the blocks of the commits after the last sync. */
export interface OutboxBlocksCheck {
  /** the commits after this seq were checked */
  durableThrough: number
  /** the own head's seq (0 before the first) */
  headSeq: number
  /** the blocks missing from the block store */
  missing: MissingBlock[]
  /** the missing blocks, rebuilt from cairn.db (each verified against its CID) */
  rebuilt: Block[]
  /** the missing blocks that cannot be rebuilt, and why */
  lost: Array<MissingBlock & { reason: string }>
}

const utf8 = new TextEncoder()

/**
 * Checks that the block store holds the blocks of the own head's tree that commits after the last sync
 * wrote, and rebuilds any it lacks from cairn.db: a file is `fileBlock(canonicalJson(envelope))` of its
 * events row, an hour bucket's shards the canonical HAMT of its outbox rows, a day and the root the plain
 * directories of `outbox_dirs`. Those commits wrote new shards only on the paths of the names they added
 * (a commit that rebuilt a whole bucket, a prune and a snapshot sync blocks.db before their head), so
 * looking their names up reads every shard that may be lost. Reads only.
 *
 * @param self this node's peer id
 * @returns what is missing, what was rebuilt and what cannot be
 */
export async function checkOutboxBlocks(store: Store, blocks: SqliteBlockstore, self: string): Promise<OutboxBlocksCheck> {
  const headSeq = store.outbox.lastSeq()
  const durableThrough = Math.min(blocksDurableThrough(store) ?? headSeq, headSeq)
  const result: OutboxBlocksCheck = { durableThrough, headSeq, missing: [], rebuilt: [], lost: [] }
  const dirs = new Map(store.outbox.dirs().map((d) => [d.path, d]))
  const root = dirs.get('')
  if (root == null) return result
  const has = (cid: string): boolean => blocks.has(CID.parse(cid))
  const lose = (m: MissingBlock, reason: string): void => {
    result.lost.push({ ...m, reason })
  }
  const files = store.outbox.unprunedAfter(durableThrough)

  const missingFiles = files.filter((f) => !has(f.cid))
  if (missingFiles.length > 0) {
    const rows = new Map(store.events.ofProducerAfter(self, missingFiles[0].seq - 1).map((r) => [r.seq, r]))
    for (const f of missingFiles) {
      const m = { what: `file of seq ${f.seq}`, cid: f.cid }
      result.missing.push(m)
      const row = rows.get(f.seq)
      if (row == null) {
        lose(m, 'its events row is gone (events-retention?)')
        continue
      }
      const block = await fileBlock(utf8.encode(canonicalJson(rowToEnvelope(row))))
      if (block.cid.toString() !== f.cid) lose(m, `its events row encodes to ${block.cid}`)
      else result.rebuilt.push(block)
    }
  }

  const buckets = new Map<string, typeof files>()
  for (const f of files) buckets.set(f.bucket, [...(buckets.get(f.bucket) ?? []), f])
  for (const [bucket, named] of buckets) {
    const stored = dirs.get(bucket)
    if (stored == null) {
      lose({ what: `bucket ${bucket}`, cid: '' }, 'outbox_dirs has no row for it')
      continue
    }
    const dir = new ShardedDirectory({ root: { cid: CID.parse(stored.cid), size: stored.size }, read: (cid) => blocks.getSync(cid) })
    let whole = true
    try {
      for (const f of named) whole &&= dir.get(f.name)?.cid.toString() === f.cid
    } catch (err) {
      if (!(err instanceof ShardUnreadableError)) throw err
      whole = false
    }
    if (whole) continue
    const m = { what: `shards of bucket ${bucket}`, cid: stored.cid }
    result.missing.push(m)
    const rebuilt = new ShardedDirectory()
    rebuilt.add(store.outbox.bucketFiles(bucket).map((r) => ({ name: r.name, cid: CID.parse(r.cid), size: r.size })))
    const { root: shardRoot, blocks: shards } = await rebuilt.flush()
    if (shardRoot.cid.toString() !== stored.cid) lose(m, `its outbox rows make the bucket ${shardRoot.cid}`)
    else result.rebuilt.push(...shards)
  }

  const plain = async (path: string, cid: string, entries: DirEntry[]): Promise<void> => {
    if (has(cid)) return
    const m = { what: path === '' ? 'root' : `day ${path}`, cid }
    result.missing.push(m)
    const block = await directoryBlock(entries)
    if (block.cid.toString() !== cid) lose(m, `outbox_dirs makes it ${block.cid}`)
    else result.rebuilt.push(block)
  }
  const entries = (under: (path: string) => boolean): DirEntry[] =>
    [...dirs.values()].filter((d) => d.path !== '' && under(d.path)).map((d) => ({ name: d.path.split('/').at(-1) ?? '', cid: CID.parse(d.cid), size: d.size }))
  for (const day of new Set([...buckets.keys()].map((b) => b.slice(0, 10)))) {
    const stored = dirs.get(day)
    if (stored == null) lose({ what: `day ${day}`, cid: '' }, 'outbox_dirs has no row for it')
    else
      await plain(
        day,
        stored.cid,
        entries((p) => p.startsWith(`${day}/`))
      )
  }
  await plain(
    '',
    root.cid,
    entries((p) => !p.includes('/'))
  )
  return result
}

/**
 * At startup, before the node serves a block or announces its head: makes sure the blocks of the own
 * head's tree are on disk. blocks.db is written without a sync of its own for each commit, so a power cut
 * may lose the blocks of the last commits while cairn.db kept their durable head; they are rebuilt here
 * from cairn.db, blocks.db is synced and the commits are recorded as durable.
 *
 * @param self this node's peer id
 * @returns how many blocks were rebuilt and after which seq
 * @throws OutboxBlocksLostError when a missing block cannot be rebuilt
 */
export async function recoverOutboxBlocks(store: Store, blocks: SqliteBlockstore, self: string): Promise<{ rebuilt: number; after: number }> {
  const check = await checkOutboxBlocks(store, blocks, self)
  if (check.lost.length > 0) throw lostError(check)
  if (check.rebuilt.length > 0) {
    blocks.putAll(check.rebuilt, { durable: true })
    const again = await checkOutboxBlocks(store, blocks, self)
    if (again.missing.length > 0) throw lostError({ ...again, lost: again.missing.map((m) => ({ ...m, reason: 'still missing after the rebuild' })) })
  }
  if (check.durableThrough !== check.headSeq || blocksDurableThrough(store) == null) {
    // What a killed process left in the WAL may be in the page cache only: synced before it counts as durable.
    blocks.sync()
    markBlocksDurable(store, check.headSeq)
  }
  return { rebuilt: check.rebuilt.length, after: check.durableThrough }
}

/** @returns the error naming what is lost, and what to do */
function lostError(check: OutboxBlocksCheck): OutboxBlocksLostError {
  const shown = check.lost
    .slice(0, 5)
    .map((l) => `${l.what}${l.cid === '' ? '' : ` (${l.cid})`}: ${l.reason}`)
    .join('; ')
  return new OutboxBlocksLostError(
    `Cannot start: the own outbox tree of head seq ${check.headSeq} misses ${check.lost.length} block(s) that cannot be rebuilt from cairn.db: ${shown}${check.lost.length > 5 ? '; …' : ''}. ` +
      'Restore blocks.db and cairn.db from the same backup (cairn doctor lists the missing blocks under "outbox blocks")',
    check.lost
  )
}
