import type { CID } from 'multiformats/cid'
import { cidFromBytes, cidString } from '../util/cidString.ts'
import type { RemoteDirsTable } from '../store/remoteDirs.ts'
import type { DirEntry } from '../unixfs/tree.ts'
import { misplacedIn, readDirectoryNode, type DirectoryNode } from '../unixfs/hamt.ts'
import { RefusedTreeError } from '../errors.ts'
import { SNAPSHOTS_DIR } from '../model/snapshot.ts'
import { fetchBlock, fetchBlocks, type WalkFetcher } from './fetch.ts'
import { planFiles, refuseDay, refuseHour, SeqWindow, type WalkBudget, type Refused, type WalkWindow } from './plan.ts'
import { PlannedFiles } from './plannedFiles.ts'

/** Shards of one level fetched and read at once: four batches of the blocks protocol. */
const LIST_SLICE = 4096

/** What a walk found in the directories that changed since the last one. */
export interface Listing {
  /** per directory walked (day, hour, shard below an hour), its CID: recorded once the walk completes */
  walked: Map<string, string>
  /** the files to fetch and those refused as oversized by their link size, in seq order, up to `top` */
  files: PlannedFiles
  /** entries refused by their name (no seq) */
  refused: Refused[]
  /** the highest seq this pass covers (see SeqWindow) */
  top: number
  /** whether it covers everything up to the head: only then are the directories walked recorded */
  complete: boolean
}

/**
 * Lists the tree of `f.producer` under `root`, descending only into the directories whose CID changed
 * since the last walk (`dirs`), and plans which files in `window` to fetch: the `keep` lowest seqs above
 * the processed one (one pass; see SeqWindow). It reads no more than `budget` allows (see WalkBudget)
 * and stops at the first bound exceeded.
 *
 * @throws RefusedTreeError when the tree is not one an honest producer writes for this head
 * @throws Error when a directory cannot be fetched or is not a directory
 */
export async function listChanges(f: WalkFetcher, root: CID, dirs: RemoteDirsTable, window: WalkWindow, budget: WalkBudget, keep: number): Promise<Listing> {
  const { producer } = f
  const found = new SeqWindow(keep, window.maxEventSize)
  const out: Listing = { walked: new Map(), files: new PlannedFiles(window.maxEventSize), refused: [], top: window.headSeq, complete: true }
  const days = await list(f, '', root, budget)
  const knownDays = dirs.many(
    producer,
    days.map((d) => d.name)
  )
  for (const day of days) {
    // A producer's snapshots are read only when a plugin needs one (plugins/snapshots.ts), never walked.
    if (day.name === SNAPSHOTS_DIR) continue
    const badDay = refuseDay(day)
    if (badDay != null) {
      budget.refused(badDay.path)
      out.refused.push(badDay)
      continue
    }
    if (knownDays.get(day.name) === day.cid.toString()) continue
    const hours = await list(f, day.name, day.cid, budget)
    const knownHours = dirs.many(
      producer,
      hours.map((h) => `${day.name}/${h.name}`)
    )
    for (const hour of hours) {
      const hourPath = `${day.name}/${hour.name}`
      const badHour = refuseHour(day.name, hour)
      if (badHour != null) {
        budget.refused(badHour.path)
        out.refused.push(badHour)
        continue
      }
      if (knownHours.get(hourPath) === hour.cid.toString()) continue
      await listBucket(f, hourPath, hour.cid, dirs, window, budget, out, found)
      out.walked.set(hourPath, hour.cid.toString())
    }
    out.walked.set(day.name, day.cid.toString())
  }
  const pass = found.finish(window.headSeq)
  out.files = pass.files
  out.top = pass.top
  out.complete = pass.complete
  if (!out.complete) out.walked.clear()
  return out
}

/** @returns the entries of a plain directory (the root or a day) */
async function list(f: WalkFetcher, path: string, cid: CID, budget: WalkBudget): Promise<DirEntry[]> {
  budget.enter(cid, path)
  let node: DirectoryNode
  try {
    node = readDirectoryNode(await fetchBlock(f, cid))
  } catch (err) {
    // A block is what its CID says for ever: a directory that does not decode is refused, not retried.
    if ((err as Error).name === 'MalformedDirectoryError') throw new RefusedTreeError('malformed_directory', `${f.producer}/${path} is not a directory: ${(err as Error).message}`)
    throw err
  }
  if (node.fanout !== 0) throw new RefusedTreeError('non_canonical_hamt', `${f.producer}/${path || '/'} is a HAMT shard where cairn writes a plain directory`)
  return node.entries
}

/**
 * Lists a HAMT bucket: descends only into shards whose CID changed since the last walk, one level at a
 * time, each level's shards fetched together, up to LIST_SLICE at once (a large catch-up walks tens of
 * thousands), and plans its
 * files shard by shard (the entries below the window are not kept). Every shard must sit where the
 * HAMT rule puts it, with the fanout of the bucket's root. Records the shards it walked in `walked`;
 * keeps the seqs it found in `found`.
 */
async function listBucket(f: WalkFetcher, path: string, cid: CID, dirs: RemoteDirsTable, window: WalkWindow, budget: WalkBudget, out: Listing, found: SeqWindow): Promise<void> {
  // A level's shards keep their CIDs as copied bytes: a CID decoded from its parent block holds the whole
  // block (and, once printed, its string), and the deepest level of a large bucket is tens of thousands.
  // CIDs are printed flat (cidString), never as multiformats' ropes of ~60 cells.
  let level: Array<{ path: string; cid: Uint8Array<ArrayBuffer>; slots: number[] }> = [{ path, cid: cid.bytes.slice(), slots: [] }]
  let fanout: number | undefined
  for (let depth = 0; level.length > 0; depth++) {
    budget.depth(depth, level[0].path)
    const next: typeof level = []
    // A level of a large bucket is tens of thousands of shards: fetched and read a slice at a time.
    for (let from = 0; from < level.length; from += LIST_SLICE) {
      const slice = level.slice(from, from + LIST_SLICE)
      const cids = slice.map((l) => cidFromBytes(l.cid))
      for (const [i, l] of slice.entries()) budget.enter(cids[i], l.path)
      const got = await fetchBlocks(f, cids, { bulkFrom: 8, concurrency: 64 })
      for (const [i, l] of slice.entries()) {
        let node: DirectoryNode
        try {
          node = readDirectoryNode(got[i])
        } catch (err) {
          throw new RefusedTreeError('malformed_directory', `${f.producer}/${l.path} is not a directory: ${(err as Error).message}`)
        }
        fanout ??= node.fanout
        if (node.fanout !== fanout) throw new RefusedTreeError('non_canonical_hamt', `${f.producer}/${l.path} has fanout ${node.fanout} in a bucket of fanout ${fanout}`)
        const misplaced = misplacedIn(node, l.slots)
        if (misplaced != null) throw new RefusedTreeError('non_canonical_hamt', `${f.producer}/${l.path}: ${misplaced}`)
        for (const r of planFiles(path, node.entries, window, found, budget)) out.refused.push(r)
        const paths = node.shards.map((shard) => `${l.path}#${shard.label}`)
        const known = dirs.many(f.producer, paths)
        node.shards.forEach((shard, j) => {
          if (known.get(paths[j]) !== cidString(shard.cid)) next.push({ path: paths[j], cid: shard.cid.bytes.slice(), slots: [...l.slots, parseInt(shard.label, 16)] })
        })
        if (l.path !== path) out.walked.set(l.path, cids[i].toString())
      }
    }
    level = next
  }
}
