import type { CID } from 'multiformats/cid'
import type { SqliteBlockstore } from '../store/blockstore.ts'
import { readDirectoryNode, type BlockReader, type DirectoryNode } from './hamt.ts'
import { isDagPb } from './tree.ts'

/** One block reached by a walk. */
export type WalkStep =
  /** a UnixFS directory, plain or a HAMT shard: its entries and shards are walked next */
  | { kind: 'directory'; cid: CID; bytes: Uint8Array; node: DirectoryNode }
  /**
   * any other block (a raw event file); `error` when it is dag-pb but not a readable directory. A raw
   * block is not read when the walk is told `readFiles: false`: then `bytes` is undefined.
   */
  | { kind: 'file'; cid: CID; bytes?: Uint8Array; error?: Error }
  /** a block that the reader does not have */
  | { kind: 'missing'; cid: CID }

/**
 * Walks UnixFS trees depth first from `roots`, reading blocks with `read`, and yields each CID once:
 * directories (plain and HAMT shards), the other blocks, and the blocks that are missing. Stop early by
 * leaving the loop. With `readFiles: false`, raw blocks are yielded unread (and never as missing). With
 * `seen`, the CIDs (as strings) in it are skipped with all below them, and each CID walked is added to it
 * before its step is yielded, so that walks that share one `seen` visit each block once between them.
 */
export function* walkDag(roots: Iterable<CID>, read: BlockReader, options: { readFiles?: boolean; seen?: Set<string> } = {}): Generator<WalkStep> {
  const stack = [...roots]
  const seen = options.seen ?? new Set<string>()
  while (stack.length > 0) {
    const cid = stack.pop()!
    const key = cid.toString()
    if (seen.has(key)) continue
    seen.add(key)
    if (options.readFiles === false && !isDagPb(cid)) {
      yield { kind: 'file', cid }
      continue
    }
    const bytes = read(cid)
    if (bytes == null) {
      yield { kind: 'missing', cid }
      continue
    }
    if (!isDagPb(cid)) {
      yield { kind: 'file', cid, bytes }
      continue
    }
    let node: DirectoryNode
    try {
      node = readDirectoryNode(bytes)
    } catch (err) {
      yield { kind: 'file', cid, bytes, error: err as Error }
      continue
    }
    yield { kind: 'directory', cid, bytes, node }
    for (const e of node.entries) stack.push(e.cid)
    for (const s of node.shards) stack.push(s.cid)
  }
}

/**
 * Reads trees of blocks.db from another process than the node's (a CLI verb), the node perhaps running:
 * `use` gets the roots that `roots()` reads, and reads blocks in one snapshot of `blocks` taken after
 * them, so the node's garbage collection deletes nothing under them meanwhile. Blocks are stored before
 * any root names them, so with roots that have not moved a missing block is damage. When `use` found a
 * block missing (`whole` says no) and the roots have moved since they were read, the node collected them in
 * between: `use` runs again on the new roots, at most `attempts` times in all.
 *
 * @returns what the last run of `use` returned
 */
export async function readTrees<R, T>(blocks: SqliteBlockstore, roots: () => R, use: (roots: R) => T | Promise<T>, whole: (result: T) => boolean, attempts = 3): Promise<T> {
  let read = roots()
  for (let attempt = 1; ; attempt++) {
    const snapshot = blocks.readSnapshot()
    let result: T
    try {
      result = await use(read)
    } finally {
      snapshot.end()
    }
    if (whole(result) || attempt >= attempts) return result
    const now = roots()
    if (JSON.stringify(now) === JSON.stringify(read)) return result
    read = now
  }
}
