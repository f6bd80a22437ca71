import { CID } from 'multiformats/cid'
import type { SqliteBlockstore } from '../store/blockstore.ts'
import type { Store } from '../store/store.ts'
import { walkDag } from '../unixfs/walk.ts'
import { stretches } from './stretches.ts'

/** Rows of the block list read at a stretch. */
const LIST_PAGE = 2000

/** Blocks deleted in one transaction. */
const DELETE_PAGE = 1000

/** File pages given back at a stretch. */
const VACUUM_PAGES = 256

/**
 * The share of the file's pages that may stay free after a run: the blocks written until the next run reuse
 * them, where giving them back would move as many pages and grow the file again.
 */
export const VACUUM_KEEP_FREE = 0.25

/**
 * Rounds of marking from the roots that changed while the previous round ran, outside the outbox's writes;
 * what changes after the last one is marked inside them, with the sweep.
 */
const REMARK_ROUNDS = 4

/**
 * The most blocks put during one collection that it records; a run that sees more stops deleting (the
 * next one collects), so the record never outgrows this however fast blocks arrive.
 */
export const GC_MAX_PUTS = 500_000

/** Runs `fn` between the outbox's writes, so that no commit is under way. */
export type Exclusive = <T>(fn: () => T) => Promise<T>

/**
 * Deletes the blocks that no root reaches: the own outbox root, every producer's synced and head roots, the
 * roots of the syncs under way (`walking`), and the blocks in `keep` (the bus root). It works in stretches of GC_SLICE_MS, resting GC_REST_RATIO times the CPU time of each, while the node goes on
 * (publishing, syncing, serving), so roots move and blocks are put while it runs. Only blocks present when
 * the run started may go, and of those none that is put again (written, fetched) before its delete, nor
 * any that a root reaches at its delete: a root not marked yet is marked before (once inside `exclusive`,
 * for the commit under way when the run began). A block that was live when marked stays until the next run.
 *
 * @returns how many blocks went and their size
 */
export async function collectGarbage(
  store: Store,
  blocks: SqliteBlockstore,
  options: {
    keep?: readonly CID[]
    /** more roots, asked again as they move: those of the syncs under way, which record them as synced once done */
    walking?: () => Iterable<string>
    /**
     * stores the blocks that the syncs under way hold in memory (BlockFetcher.flushWalks): a sync reads
     * stored blocks below directories it holds there only, so they are stored before a delete is decided
     */
    flushWalks?: () => void
    exclusive: Exclusive
    /** true once the node stops: the run ends at its next pause, with what it deleted so far */
    stopping?: () => boolean
    sliceMs?: number
    restRatio?: number
    /** the process's CPU time in ms (process.cpuUsage by default) */
    cpuMs?: () => number
    maxPuts?: number
  }
): Promise<{ blocks: number; bytes: number }> {
  const maxPuts = options.maxPuts ?? GC_MAX_PUTS
  const keep = (options.keep ?? []).map((k) => k.toString())
  // Directories a walk reached but did not have (a sync fetching them): what they link is marked once they
  // arrive, since a sync puts what it fetches but not the blocks under it that it already holds. A block
  // missing when walked can only arrive by a put during the run, so the puts tell which did: a look-up per
  // missing directory at every stretch would cost as much as the links of the directories stored (a member
  // controls those).
  const missing = new Set<string>()
  const arrived = new Set<string>()
  const tracked = blocks.track(maxPuts, (cid) => {
    if (missing.has(cid)) arrived.add(cid)
  })
  let deleted = 0
  let bytes = 0
  /** Lets the node go on once a stretch is over. @returns whether the node is stopping (the run ends) */
  const pause = stretches(options)
  try {
    const before: Array<{ cid: string; size: number }> = []
    // Blocks stored from now on are not listed (nor deleted): the listing ends however fast they come.
    const through = blocks.lastPosition()
    for (let after: number | undefined = 0; after != null; ) {
      const page = blocks.sizesPage(after, LIST_PAGE, through)
      for (const r of page.rows) before.push(r)
      after = page.next
      if (await pause()) return { blocks: 0, bytes: 0 }
    }
    const roots = (): string[] => {
      const all = new Set<string>(keep)
      const own = store.outbox.root()
      if (own != null) all.add(own)
      for (const r of store.producers.roots()) all.add(r)
      for (const r of options.walking?.() ?? []) all.add(r)
      return [...all]
    }
    // Every CID walked, with all below it: a walk skips what an earlier walk marked.
    const live = new Set<string>()
    function* walk(from: string[]): Generator<unknown> {
      // A block that is no directory is a leaf; event files need not be read.
      for (const step of walkDag(
        from.map((c) => CID.parse(c)),
        (cid) => blocks.getSync(cid),
        { readFiles: false, seen: live }
      )) {
        if (step.kind === 'missing') missing.add(step.cid.toString())
        yield step
      }
    }
    /** @returns the roots not marked yet, and the missing directories that have arrived (unmarked again) */
    const unmarked = (): string[] => {
      const from = roots().filter((r) => !live.has(r))
      for (const m of arrived) {
        missing.delete(m)
        live.delete(m)
        from.push(m)
      }
      arrived.clear()
      return from
    }
    for (let round = 0; round <= REMARK_ROUNDS; round++) {
      const from = unmarked()
      if (from.length === 0) break
      for (const _ of walk(from)) if (await pause()) return { blocks: 0, bytes: 0 }
    }
    // What may go; marking only grows `live`, so what goes is among these.
    const candidates: Array<{ cid: string; size: number }> = []
    for (let k = 0; k < before.length; k++) {
      if (!live.has(before[k].cid)) candidates.push(before[k])
      if (k % 256 === 0 && (await pause())) return { blocks: 0, bytes: 0 }
    }
    before.length = 0
    // What moved while the candidates were gone through (a catch-up's whole tree, maybe) is marked in
    // stretches here, so that the exclusive section marks only what moves from now on.
    for (const _ of walk(unmarked())) if (await pause()) return { blocks: 0, bytes: 0 }
    // Between the outbox's writes: the blocks of a commit under way (begun before the run, so not recorded
    // as put) are not reachable from its head yet. Once past this section, every commit began after the run
    // did and every block it writes is recorded.
    const dead = await options.exclusive(() => {
      drain(walk(unmarked()))
      return candidates.filter((b) => !live.has(b.cid))
    })
    // Deleted a page at a time; before each, in the same stretch, the roots that moved are marked and what
    // was put is left, so nothing can take up a block between the check and the delete.
    for (let at = 0; at < dead.length; at += DELETE_PAGE) {
      // A root that moved far (a catch-up) is marked in stretches first; the last of it with the delete.
      for (const _ of walk(unmarked())) if (await pause()) return { blocks: deleted, bytes }
      // In the same stretch as the delete: what a sync holds in memory is stored (its puts tracked, its
      // directories marked), so a stored block it reached through them is live.
      options.flushWalks?.()
      drain(walk(unmarked()))
      if (tracked.full) throw new Error(`more than ${maxPuts} blocks were put while garbage was collected, so this run deleted ${deleted} of ${dead.length}`)
      const page = dead.slice(at, at + DELETE_PAGE).filter((b) => !live.has(b.cid) && !tracked.has(b.cid))
      blocks.remove(page.map((b) => b.cid))
      deleted += page.length
      bytes += page.reduce((n, b) => n + b.size, 0)
      if (await pause()) return { blocks: deleted, bytes }
    }
    tracked.stop()
    if (deleted > 0) {
      // Free pages beyond a share of the file go back a few at a time (the rest are reused by the blocks that
      // come next, which would grow the file again); the loop ends however many pages other writes free meanwhile.
      const keepFree = Math.floor(blocks.pages() * VACUUM_KEEP_FREE)
      for (let free = blocks.freePages(), rounds = Math.ceil(free / VACUUM_PAGES) + 1; free > keepFree && rounds > 0; rounds--) {
        free = blocks.vacuumSome(Math.min(VACUUM_PAGES, free - keepFree))
        if (await pause()) return { blocks: deleted, bytes }
      }
      blocks.truncateWal()
    }
    return { blocks: deleted, bytes }
  } finally {
    tracked.stop()
  }
}

/** Runs a walk to its end. */
function drain(steps: Iterator<unknown>): void {
  while (!steps.next().done);
}
