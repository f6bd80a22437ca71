import { CID } from 'multiformats/cid'
import type { SqlDatabase } from '../runtime/sqlite.ts'
import type { SqliteBlockstore } from '../store/blockstore.ts'
import { directoryBlock } from './tree.ts'

/**
 * Builds this node's view of the bus directory: one entry per producer, named by its peer id, linking the
 * outbox root this node holds completely. With `blocks`, the block is stored (for export). Link sizes are left 0: this node does not know every remote DAG's size. The block is stored, so the directory can be exported or served.
 *
 * @returns the bus root CID
 */
export async function busRoot (db: SqlDatabase, blocks?: SqliteBlockstore): Promise<CID> {
  const rows = db.all<{ producer: string, synced_root: string }>('SELECT producer, synced_root FROM producers WHERE synced_root IS NOT NULL ORDER BY producer')
  const dir = await directoryBlock(rows.map((r) => ({ name: r.producer, cid: CID.parse(r.synced_root), size: 0 })))
  blocks?.putSync(dir.cid, dir.bytes)
  return dir.cid
}
