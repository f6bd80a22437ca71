import { CID } from 'multiformats/cid'
import type { SqliteBlockstore } from '../store/blockstore.ts'
import type { Store } from '../store/store.ts'
import { walkDag } from '../unixfs/walk.ts'

/** How long (ms) a collection works at a stretch before it lets the event loop run (delivery, publishes). */
export const GC_SLICE_MS = 4

/** Rows of the block list read at a stretch. */
const LIST_PAGE = 2000

/**
 * Rounds of marking from the roots that changed while the previous round ran, outside the outbox's writes;
 * what changes after the last one is marked inside them, with the sweep.
 */
const REMARK_ROUNDS = 4

/**
 * The most blocks put during one collection that it records; a run that sees more deletes nothing (the
 * next one collects), so the record never outgrows this however fast blocks arrive.
 */
export const GC_MAX_PUTS = 500_000

/** Where a collection runs its sweep: between the outbox's writes, so that no commit is under way. */
export type Exclusive = <T>(fn: () => T) => Promise<T>

/** Lets the event loop run (timers, I/O, other tasks) before the collection goes on. */
const breathe = async (): Promise<void> => await new Promise((resolve) => setImmediate(resolve))

/**
 * Deletes the blocks that no root reaches: the own outbox root, every producer's synced and head roots, and
 * the blocks in `keep` (the bus root). It works in slices of GC_SLICE_MS between which the node goes on
 * (publishing, syncing, serving), so roots change and blocks are put while it marks: a root that was not
 * marked yet is marked in a later round, the last of them inside `exclusive` together with the sweep, and
 * a block put (written, fetched, or written again after it was dead) from the start of the run to the sweep
 * stays. Only blocks present when the run started may go.
 *
 * @returns how many blocks went and their size
 */
export async function collectGarbage(
  store: Store,
  blocks: SqliteBlockstore,
  options: { keep?: readonly CID[]; exclusive: Exclusive; sliceMs?: number; maxPuts?: number }
): Promise<{ blocks: number; bytes: number }> {
  const sliceMs = options.sliceMs ?? GC_SLICE_MS
  const maxPuts = options.maxPuts ?? GC_MAX_PUTS
  const keep = (options.keep ?? []).map((k) => k.toString())
  const tracked = blocks.track(maxPuts)
  try {
    let sliceStart = performance.now()
    const pace = async (): Promise<void> => {
      if (performance.now() - sliceStart < sliceMs) return
      await breathe()
      sliceStart = performance.now()
    }
    const before: Array<{ cid: string; size: number }> = []
    for (let after: number | undefined = 0; after != null; ) {
      const page = blocks.sizesPage(after, LIST_PAGE)
      for (const r of page.rows) before.push(r)
      after = page.next
      await pace()
    }
    const roots = (): string[] => {
      const all = new Set<string>(keep)
      const own = store.outbox.root()
      if (own != null) all.add(own)
      for (const r of store.producers.roots()) all.add(r)
      return [...all]
    }
    // Every CID walked, with all below it: a walk skips what an earlier walk marked.
    const live = new Set<string>()
    const walk = (from: string[]): Generator<unknown> =>
      walkDag(
        from.map((c) => CID.parse(c)),
        (cid) => blocks.getSync(cid),
        // A missing block and a block that is no directory are leaves; event files need not be read.
        { readFiles: false, seen: live }
      )
    const unmarked = (): string[] => roots().filter((r) => !live.has(r))
    for (let round = 0; round <= REMARK_ROUNDS; round++) {
      const from = unmarked()
      if (from.length === 0) break
      for (const _ of walk(from)) await pace()
    }
    // Between the outbox's writes, in one stretch: the blocks of a commit under way are not reachable from
    // its head yet, and nothing may take up a block between this last marking and the delete.
    const dead = await options.exclusive(() => {
      drain(walk(unmarked()))
      if (tracked.full) return undefined
      const d = before.filter((b) => !live.has(b.cid) && !tracked.has(b.cid))
      blocks.remove(d.map((b) => b.cid))
      return d
    })
    tracked.stop()
    if (dead == null) throw new Error(`more than ${maxPuts} blocks were put while garbage was collected, so this run deleted none`)
    if (dead.length > 0) blocks.compact()
    return { blocks: dead.length, bytes: dead.reduce((n, b) => n + b.size, 0) }
  } finally {
    tracked.stop()
  }
}

/** Runs a walk to its end. */
function drain(steps: Iterator<unknown>): void {
  while (!steps.next().done);
}
