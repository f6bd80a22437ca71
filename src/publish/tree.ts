import { CID } from 'multiformats/cid'
import type { Log } from '../log/logger.ts'
import type { SqliteBlockstore } from '../store/blockstore.ts'
import type { OutboxTable } from '../store/outbox.ts'
import { ShardUnreadableError } from '../errors.ts'
import { ShardedDirectory } from '../unixfs/hamt.ts'
import { directoryBlock, type Block, type DirEntry } from '../unixfs/tree.ts'

/** A new version of the outbox tree, not yet durable. */
export interface TreeChange {
  root: CID
  blocks: Block[]
  /** outbox_dirs changes: path → new entry, or null when it went away */
  updates: Map<string, DirEntry | null>
  /** whether a bucket was built again from the outbox table: its shards are new off the paths of the names changed */
  rebuilt?: boolean
}

/** How many hour buckets stay open: commits touch the current hour. */
const OPEN_BUCKETS = 4

/**
 * This node's outbox tree (`yyyy-mm-dd/hh/<file>`): the directories as the head points at them, and the
 * few hour buckets (HAMTs) that commits touch, open in memory. It changes only through `apply`, once a
 * change is durable.
 */
export class OutboxTree {
  private readonly outbox: OutboxTable
  private readonly blocks: SqliteBlockstore
  private readonly log: Log
  private readonly dirs = new Map<string, DirEntry>()
  private readonly buckets = new Map<string, ShardedDirectory>()

  constructor(outbox: OutboxTable, blocks: SqliteBlockstore, log: Log) {
    this.outbox = outbox
    this.blocks = blocks
    this.log = log
    for (const r of outbox.dirs()) {
      this.dirs.set(r.path, { name: r.path.split('/').at(-1) ?? '', cid: CID.parse(r.cid), size: r.size })
    }
  }

  /** @returns the root directory, or undefined before the first head */
  get root(): DirEntry | undefined {
    return this.dirs.get('')
  }

  /**
   * Rebuilds the touched hour buckets (entries added, names removed), their days and the root.
   * An emptied bucket, and an emptied day, go away. `rootEntries` sets other entries of the root (the
   * `snapshots` directory), already built, or removes them (null).
   */
  async build(additions: Map<string, DirEntry[]>, removals: Map<string, Set<string>>, rootEntries: ReadonlyMap<string, DirEntry | null> = new Map()): Promise<TreeChange> {
    const blocks: Block[] = []
    let rebuilt = false
    const updates = new Map<string, DirEntry | null>(rootEntries)
    const touchedDays = new Set<string>()
    for (const bucket of new Set([...additions.keys(), ...removals.keys()])) {
      const change = (dir: ShardedDirectory): ShardedDirectory => {
        dir.remove(removals.get(bucket) ?? [])
        dir.add(additions.get(bucket) ?? [])
        return dir
      }
      let dir: ShardedDirectory
      try {
        dir = change(this.bucketDir(bucket))
      } catch (err) {
        if (!(err instanceof ShardUnreadableError)) throw err
        // The stored bucket cannot be read back (blocks restored from an older backup, or a bucket an
        // older version wrote with another fanout): build it again from the outbox table.
        this.log.warn(`rebuilding outbox bucket ${bucket} from the outbox table: ${err.message}`)
        dir = change(this.bucketDir(bucket, true))
        rebuilt = true
      }
      touchedDays.add(bucket.slice(0, 10))
      if (dir.size === 0) {
        updates.set(bucket, null)
        continue
      }
      // Hour buckets are HAMT-sharded: a reader fetches only the shards that changed.
      const { root, blocks: shards } = await dir.flush()
      blocks.push(...shards)
      updates.set(bucket, { name: bucket.slice(11), cid: root.cid, size: root.size })
    }
    const dirs = new Map(this.dirs)
    for (const [path, e] of updates) {
      if (e == null) dirs.delete(path)
      else dirs.set(path, e)
    }
    for (const day of touchedDays) {
      const hours = [...dirs].filter(([path]) => path.startsWith(`${day}/`)).map(([, e]) => e)
      if (hours.length === 0) {
        updates.set(day, null)
        dirs.delete(day)
        continue
      }
      const dir = await directoryBlock(hours)
      blocks.push(dir)
      updates.set(day, { name: day, cid: dir.cid, size: dir.size })
      dirs.set(day, updates.get(day)!)
    }
    const days = [...dirs].filter(([path]) => path !== '' && !path.includes('/')).map(([, e]) => e)
    const root = await directoryBlock(days)
    blocks.push(root)
    updates.set('', { name: '', cid: root.cid, size: root.size })
    return { root: root.cid, blocks, updates, rebuilt }
  }

  /** Takes a change that is now durable as the tree. */
  apply(change: TreeChange): void {
    for (const [path, e] of change.updates) {
      if (e == null) this.dirs.delete(path)
      else this.dirs.set(path, e)
    }
  }

  /** Forgets the open buckets: they may hold what was not written. They are read back from the table. */
  reset(): void {
    this.buckets.clear()
  }

  /**
   * @returns the HAMT of an hour bucket, opened at its stored root on first use (its shards are read
   * back from the block store as commits touch them); `rebuild` builds it from the outbox table instead.
   */
  private bucketDir(bucket: string, rebuild = false): ShardedDirectory {
    let dir = rebuild ? undefined : this.buckets.get(bucket)
    if (dir == null) {
      const read = (cid: CID): Uint8Array | undefined => this.blocks.getSync(cid)
      const stored = this.dirs.get(bucket)
      if (stored != null && !rebuild) {
        dir = new ShardedDirectory({ root: stored, count: this.outbox.bucketCount(bucket), read })
      } else {
        dir = new ShardedDirectory({ read })
        dir.add(this.outbox.bucketFiles(bucket).map((r) => ({ name: r.name, cid: CID.parse(r.cid), size: r.size })))
      }
    }
    this.buckets.delete(bucket)
    // Only the bucket in use keeps a budget of deep shards (KEEP_SHARDS): the others keep their top levels.
    for (const other of this.buckets.values()) other.release()
    this.buckets.set(bucket, dir)
    for (const old of [...this.buckets.keys()].slice(0, Math.max(0, this.buckets.size - OPEN_BUCKETS))) this.buckets.delete(old)
    return dir
  }
}
