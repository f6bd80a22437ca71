import type { CID } from 'multiformats/cid'
import type { RemoteDirsTable } from '../store/remoteDirs.ts'
import type { DirEntry } from '../unixfs/tree.ts'
import { readDirectoryNode, type DirectoryNode } from '../unixfs/hamt.ts'
import { fetchBlock, fetchBlocks, type WalkFetcher } from './fetch.ts'
import { planFiles, refuseDay, refuseHour, type Candidate, type Refused, type WalkWindow } from './plan.ts'

/** What a walk found in the directories that changed since the last one. */
export interface Listing {
  /** per directory walked (day, hour, shard below an hour), its CID: recorded once the walk completes */
  walked: Map<string, string>
  /** the files to fetch, in seq order */
  candidates: Candidate[]
  refused: Refused[]
  /** seqs refused as oversized: found, though not fetched */
  oversized: Set<number>
}

/**
 * Lists the tree of `f.producer` under `root`, descending only into the directories whose CID changed
 * since the last walk (`dirs`), and plans which files in `window` to fetch.
 *
 * @throws Error when a directory cannot be fetched or is not a directory
 */
export async function listChanges(f: WalkFetcher, root: CID, dirs: RemoteDirsTable, window: WalkWindow): Promise<Listing> {
  const { producer } = f
  const out: Listing = { walked: new Map(), candidates: [], refused: [], oversized: new Set() }
  const days = await list(f, '', root)
  for (const day of days) {
    const badDay = refuseDay(day)
    if (badDay != null) {
      out.refused.push(badDay)
      continue
    }
    if (dirs.get(producer, day.name) === day.cid.toString()) continue
    for (const hour of await list(f, day.name, day.cid)) {
      const hourPath = `${day.name}/${hour.name}`
      const badHour = refuseHour(day.name, hour)
      if (badHour != null) {
        out.refused.push(badHour)
        continue
      }
      if (dirs.get(producer, hourPath) === hour.cid.toString()) continue
      const files = await listBucket(f, hourPath, hour.cid, dirs, out.walked)
      const plan = planFiles(hourPath, files, window)
      out.candidates.push(...plan.candidates)
      out.refused.push(...plan.refused)
      for (const seq of plan.oversized) out.oversized.add(seq)
      out.walked.set(hourPath, hour.cid.toString())
    }
    out.walked.set(day.name, day.cid.toString())
  }
  out.candidates.sort((a, b) => a.seq - b.seq)
  return out
}

async function list(f: WalkFetcher, path: string, cid: CID): Promise<DirEntry[]> {
  let node: DirectoryNode
  try {
    node = readDirectoryNode(await fetchBlock(f, cid))
  } catch (err) {
    if ((err as Error).name === 'MalformedDirectoryError') throw new Error(`${f.producer}/${path} is not a directory: ${(err as Error).message}`)
    throw err
  }
  return node.entries
}

/**
 * Lists a HAMT bucket: descends only into shards whose CID changed since the last walk, one level at a
 * time, each level's shards fetched together (a large catch-up walks hundreds of them). Records the
 * shards it walked in `walked`.
 */
async function listBucket(f: WalkFetcher, path: string, cid: CID, dirs: RemoteDirsTable, walked: Map<string, string>): Promise<DirEntry[]> {
  const out: DirEntry[] = []
  let level = [{ path, cid }]
  while (level.length > 0) {
    const got = await fetchBlocks(
      f,
      level.map((l) => l.cid),
      { bulkFrom: 8, concurrency: 64 }
    )
    const next: typeof level = []
    for (const [i, l] of level.entries()) {
      let node: DirectoryNode
      try {
        node = readDirectoryNode(got[i])
      } catch (err) {
        throw new Error(`${f.producer}/${l.path} is not a directory: ${(err as Error).message}`)
      }
      out.push(...node.entries)
      const paths = node.shards.map((shard) => `${l.path}#${shard.label}`)
      const known = dirs.many(f.producer, paths)
      node.shards.forEach((shard, j) => {
        if (known.get(paths[j]) !== shard.cid.toString()) next.push({ path: paths[j], cid: shard.cid })
      })
      if (l.path !== path) walked.set(l.path, l.cid.toString())
    }
    level = next
  }
  return out
}
