import { CID } from 'multiformats/cid'
import type { SqliteBlockstore } from '../store/blockstore.ts'
import type { Store } from '../store/store.ts'
import { walkDag } from '../unixfs/walk.ts'

/**
 * Deletes the blocks that no root reaches: the own outbox root, every producer's synced and head roots, and
 * the blocks in `keep` (the bus root).
 *
 * @returns how many blocks went and their size
 */
export function collectGarbage(store: Store, blocks: SqliteBlockstore, keep: readonly CID[] = []): { blocks: number; bytes: number } {
  // Only blocks present before marking may go: a block fetched or written meanwhile survives this run.
  const before = blocks.sizes()
  const roots = new Set<string>()
  const own = store.outbox.root()
  if (own != null) roots.add(own)
  for (const r of store.producers.roots()) roots.add(r)
  for (const k of keep) roots.add(k.toString())
  const live = new Set<string>()
  // A missing block and a block that is no directory are leaves; event files need not be read.
  for (const step of walkDag(
    [...roots].map((c) => CID.parse(c)),
    (cid) => blocks.getSync(cid),
    { readFiles: false }
  ))
    live.add(step.cid.toString())
  const dead = before.filter((b) => !live.has(b.cid))
  blocks.remove(dead.map((b) => b.cid))
  if (dead.length > 0) blocks.compact()
  return { blocks: dead.length, bytes: dead.reduce((n, b) => n + b.size, 0) }
}
