import type { CID } from 'multiformats/cid'
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
