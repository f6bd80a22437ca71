import { CID } from 'multiformats/cid'
import { equals } from 'uint8arrays/equals'
import { tailKey } from '../store/blockstore.ts'
import { HINT_MAX_BLOCKS, HINT_MAX_BYTES } from '../model/head.ts'
import { readDirectoryNode, type DirectoryNode } from '../unixfs/hamt.ts'
import { isDagPb } from '../unixfs/tree.ts'

interface Block {
  cid: CID
  bytes: Uint8Array
}

/**
 * How long a commit within it of the last hint may wait for more, and how many events a hint should cover
 * before it goes sooner. Measured (BENCHMARKS.md, "Hints paced"): ten nodes on two cores, one publishing 100
 * events/s, reach the farthest node in a p50 of 0.8-1 s with a hint per commit (every node saturated by a
 * whole round per hint) and ~70 ms with hints of ~4 events; two nodes at 1,000 events/s keep a p50 of ~12 ms.
 */
export const HINT_HOLD_MS = 40
export const HINT_EVENTS = 4

export interface HintPacerInit {
  /** the most hints sent per second */
  perSecond: number
  /** how long a hint covering fewer than `events` events may wait for more commits */
  holdMs: number
  /** how many events a hint should cover before it goes without waiting `holdMs` */
  events: number
  /** sends one hint: the newest signed head, with the blocks of the commits it covers that fit the hint's budget */
  send: (signed: Uint8Array, blocks: Block[]) => void
  now?: () => number
}

/**
 * Paces a node's own hints. Every hint costs every node of the network a whole round (its transport, the
 * signature and hashes, a walk, the plugins, the stream) whatever the events it covers, and receivers check
 * each producer's heads per peer at a bounded rate (`heads-per-second`): over it they keep only the newest head of each
 * producer, the events covered but the skipped hints' blocks lost, so each walk fetched them over the network.
 *
 * A commit `holdMs` (or 1/`perSecond`, when longer) after the last hint is hinted at once: a lone event waits
 * for nothing. Sooner, a commit is held, and replaced by newer ones; the held hint goes once it covers `events`
 * events (but never sooner than 1/`perSecond` after the last) or when that time has passed since the last.
 * It carries the blocks of every commit since the last hint that its head's root still reaches (a directory
 * an older commit wrote and a newer one replaced is of no use to a walk of this head), newest commit first,
 * whole commits only, within the hint's budget.
 */
export class HintPacer {
  private readonly init: HintPacerInit
  private readonly intervalMs: number
  /** how long after the last hint a commit goes at once, and the longest a held hint waits */
  private readonly quietMs: number
  private lastSent = Number.NEGATIVE_INFINITY
  /** the newest head held back, and the blocks of the commits since the last hint (oldest first) */
  private held?: { signed: Uint8Array; commits: Block[][]; bytes: number; blocks: number; events: number }
  private timer?: { at: number; handle: ReturnType<typeof setTimeout> }

  constructor(init: HintPacerInit) {
    this.init = init
    this.intervalMs = 1000 / init.perSecond
    this.quietMs = Math.max(init.holdMs, this.intervalMs)
  }

  /**
   * Hints `signed` (a head newer than any pushed before), whose commit added `events` events and `blocks`:
   * now, or when the rule above lets it go.
   */
  push(signed: Uint8Array, blocks: readonly Block[], events: number): void {
    const now = this.now()
    if (this.held == null && now - this.lastSent >= this.quietMs) {
      this.sendNow(signed, [...blocks], now)
      return
    }
    const held = this.held ?? { signed, commits: [], bytes: 0, blocks: 0, events: 0 }
    held.signed = signed
    held.commits.push([...blocks])
    held.bytes += blocks.reduce((n, b) => n + b.bytes.length, 0)
    held.blocks += blocks.length
    held.events += events
    // Only the newest commits that fit the budget are ever sent: older ones are let go at once.
    while (held.commits.length > 1 && (held.bytes > HINT_MAX_BYTES || held.blocks > HINT_MAX_BLOCKS)) {
      const oldest = held.commits.shift()!
      held.bytes -= oldest.reduce((n, b) => n + b.bytes.length, 0)
      held.blocks -= oldest.length
    }
    this.held = held
    const due = held.events >= this.init.events ? this.lastSent + this.intervalMs : this.lastSent + this.quietMs
    if (due <= now) {
      this.flush()
      return
    }
    if (this.timer != null && this.timer.at <= due) return
    if (this.timer != null) clearTimeout(this.timer.handle)
    this.timer = {
      at: due,
      handle: setTimeout(
        () => {
          this.timer = undefined
          this.flush()
        },
        Math.max(0, due - now)
      )
    }
  }

  /** Sends the held hint now, if any (at stop, so that the last commit is hinted). */
  flush(): void {
    if (this.timer != null) clearTimeout(this.timer.handle)
    this.timer = undefined
    const held = this.held
    if (held == null) return
    this.held = undefined
    const blocks: Block[] = []
    const index = new BlockIndex(held.commits)
    // A single commit's blocks are all new parts of its own tree, as an unpaced hint sends them.
    const live = held.commits.length > 1 ? reachable(held.signed, index) : undefined
    const seen = new Set<Block>()
    let bytes = 0
    for (let i = held.commits.length - 1; i >= 0; i--) {
      // Each CID's first held block stands for it: a block two commits share is sent once.
      const fresh = held.commits[i].map((b) => index.get(b.cid.bytes)!).filter((b) => !seen.has(b) && (live == null || live.has(b)))
      const size = fresh.reduce((n, b) => n + b.bytes.length, 0)
      if (bytes + size > HINT_MAX_BYTES || blocks.length + fresh.length > HINT_MAX_BLOCKS) break
      for (const b of fresh) {
        seen.add(b)
        blocks.push(b)
      }
      bytes += size
    }
    this.sendNow(held.signed, blocks, this.now())
  }

  private sendNow(signed: Uint8Array, blocks: Block[], now: number): void {
    this.lastSent = now
    this.init.send(signed, blocks)
  }

  private now(): number {
    return this.init.now?.() ?? performance.now()
  }
}

const utf8 = new TextDecoder()

/**
 * The held blocks by their CID's bytes, the first of each CID standing for it. A link is looked up by the
 * last bytes of its CID (a digest's tail) and compared whole only on a hit: the links a walk meets that
 * lead out of the held blocks (the rest of a large bucket) cost no string and no hash.
 */
class BlockIndex {
  private readonly byTail = new Map<number, Block[]>()

  constructor(commits: readonly Block[][]) {
    for (const commit of commits) for (const b of commit) if (this.get(b.cid.bytes) == null) this.add(b)
  }

  get(cid: Uint8Array): Block | undefined {
    return this.byTail.get(tailKey(cid))?.find((b) => equals(b.cid.bytes, cid))
  }

  private add(b: Block): void {
    const key = tailKey(b.cid.bytes)
    const list = this.byTail.get(key)
    if (list == null) this.byTail.set(key, [b])
    else list.push(b)
  }
}

/**
 * @returns the held blocks (as `index` gives them) that the root of the signed head reaches through held
 * blocks alone, or undefined when that root is not one of them (a head a prune re-signed): then which are
 * of use is unknown, and all are
 */
function reachable(signed: Uint8Array, index: BlockIndex): Set<Block> | undefined {
  let root: Block | undefined
  try {
    root = index.get(CID.parse((JSON.parse(utf8.decode(signed)) as { head: { root: string } }).head.root).bytes)
  } catch {
    return undefined
  }
  if (root == null) return undefined
  const live = new Set<Block>([root])
  const stack = [root]
  while (stack.length > 0) {
    const b = stack.pop()!
    if (!isDagPb(b.cid)) continue
    let node: DirectoryNode
    try {
      node = readDirectoryNode(b.bytes)
    } catch {
      continue
    }
    for (const link of [...node.entries, ...node.shards]) {
      const next = index.get(link.cid.bytes)
      if (next == null || live.has(next)) continue
      live.add(next)
      stack.push(next)
    }
  }
  return live
}
