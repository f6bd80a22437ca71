import { CID } from 'multiformats/cid'
import type { SqliteBlockstore } from '../store/blockstore.ts'
import { directoryBlock } from './tree.ts'

/**
 * Builds this node's view of the bus directory: one entry per producer, named by its peer id, linking the
 * outbox root this node holds completely (`roots`, as `store.producers.syncedRoots()` gives them, ordered by
 * producer). Link sizes are left 0: this node does not know every remote DAG's size.
 *
 * @returns the directory's block
 */
export async function busDirectory(roots: ReadonlyArray<{ producer: string; root: string }>): Promise<{ cid: CID; bytes: Uint8Array }> {
  return await directoryBlock(roots.map((r) => ({ name: r.producer, cid: CID.parse(r.root), size: 0 })))
}

/**
 * Builds the bus directory (see busDirectory); with `blocks`, the block is stored unless it is already, so that
 * the node can serve it.
 *
 * @returns the bus root CID
 */
export async function busRoot(roots: ReadonlyArray<{ producer: string; root: string }>, blocks?: SqliteBlockstore): Promise<CID> {
  const dir = await busDirectory(roots)
  if (blocks != null && !blocks.has(dir.cid)) blocks.putSync(dir.cid, dir.bytes)
  return dir.cid
}
