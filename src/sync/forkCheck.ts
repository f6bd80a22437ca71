import { CID } from 'multiformats/cid'
import type { Components } from '../node/components.ts'
import type { Head } from '../model/head.ts'
import { isDayName, isHourName, parseFileName } from '../model/layout.ts'
import { labelAt, readDirectoryNode, type DirectoryNode } from '../unixfs/hamt.ts'
import { isDagPb } from '../unixfs/tree.ts'

/** The most directory blocks one check reads (carried, local or fetched): past it, no verdict. */
const FORK_CHECK_BLOCKS = 64
/** …and the most bytes. */
const FORK_CHECK_BYTES = 2 * 1024 * 1024
/** How many roots are remembered as checked; the oldest is forgotten first. */
const REMEMBERED_ROOTS = 1024
/** How many times one root is tried while its blocks cannot be had. */
const ATTEMPTS = 3

/** What a check of one own head found: the same file at its seq, another one (a fork), or no verdict. */
type ForkVerdict = 'same' | 'forked' | 'no_verdict'

export interface ForkCheckInit {
  /** a block, from the local store or from peers, within `signal` (it may store what it fetches) */
  getBlock: (cid: CID, signal: AbortSignal) => Promise<Uint8Array>
  /** how long one check may take in all */
  timeoutMs: number
}

export type ForkCheckComponents = Pick<Components, 'store' | 'events' | 'log' | 'metrics'>

/** Why a check gave up without a verdict. */
class NoVerdict extends Error {}

/**
 * Tells whether this node's identity also publishes elsewhere (a copied data directory, a restored backup
 * started beside the original): another copy's events take the same seqs with other files, and peers keep
 * whichever they saw first. A head of its own producer that a peer hands it (only a holder of its key can
 * sign one) whose root is not this node's current one is looked into once: the event file at the head's
 * seq in that root's tree must be the file this node's outbox row for that seq names. Its own re-signs (a
 * prune, a snapshot, a head refresh) keep that file, so they agree; a copy that published under the seq
 * has another file there: 'self:diverged' with `fork`. A head ahead of the outbox is intake's (it
 * dispatches 'self:diverged' itself); a seq without an outbox row, a file not in the tree (pruned) or
 * blocks not had within FORK_CHECK_BLOCKS, FORK_CHECK_BYTES and `timeoutMs` give no verdict, never a fork.
 *
 * A peer can hand this node any of its old heads (every peer kept them), of roots whose blocks nobody holds any
 * more, each costing a check the whole timeout: heads of the roots this node signed lately (`signed_roots`, the
 * last SIGNED_ROOTS) are not checked at all, and of the heads offered while a check runs, the one signed last
 * waits and is checked next (others are dropped: they are pushed and announced again), so that replays of older
 * ones cannot hold back a copy's current head. A root is checked once (up to ATTEMPTS while its blocks cannot be
 * had), the last REMEMBERED_ROOTS kept.
 */
export class ForkCheck {
  private readonly init: ForkCheckInit
  private readonly components: ForkCheckComponents
  /** per root looked into, the attempts without its blocks; Infinity once it had a verdict */
  private readonly checked = new Map<string, number>()
  private running: { root: string; done: Promise<void> } | undefined
  /** the head offered while a check ran that is checked next */
  private waiting: { head: Head; carried: ReadonlyArray<{ cid: CID; bytes: Uint8Array }> } | undefined
  private readonly abort = new AbortController()

  constructor(init: ForkCheckInit, components: ForkCheckComponents) {
    this.init = init
    this.components = components
  }

  /**
   * Offers a verified head of this node's own producer and the blocks its message carried; looked into
   * in the background when it is due (see the class).
   */
  offer(head: Head, carried: ReadonlyArray<{ cid: CID; bytes: Uint8Array }>): void {
    const { outbox } = this.components.store
    const root = head.root
    if (this.abort.signal.aborted || root === this.running?.root || root === this.waiting?.head.root) return
    if ((this.checked.get(root) ?? 0) >= ATTEMPTS) return
    if (head.seq > outbox.lastSeq() || root === outbox.root() || outbox.hasSigned(root)) return
    if (this.running != null) {
      const w = this.waiting?.head
      if (w == null || head.hlc > w.hlc || (head.hlc === w.hlc && head.seq > w.seq)) this.waiting = { head, carried }
      return
    }
    const done = this.check(head, carried)
      .catch((err: Error) => {
        this.components.log.debug(`cannot check this node's own head at seq ${head.seq} (root ${root}): ${err.message}`)
      })
      .finally(() => {
        this.running = undefined
        const next = this.waiting
        this.waiting = undefined
        if (next != null) this.offer(next.head, next.carried)
      })
    this.running = { root, done }
  }

  /** Ends the check under way (a stop), and starts no other. */
  async stop(): Promise<void> {
    this.abort.abort()
    this.waiting = undefined
    await this.running?.done
  }

  private async check(head: Head, carried: ReadonlyArray<{ cid: CID; bytes: Uint8Array }>): Promise<void> {
    const { store, events, log, metrics } = this.components
    const root = head.root
    const row = store.outbox.atSeq(head.seq)
    let verdict: ForkVerdict = 'no_verdict'
    let found: { name: string; cid: CID } | undefined
    if (row != null) {
      try {
        found = await this.fileAt(CID.parse(root), head.seq, row.bucket, row.name, carried)
        if (found != null) verdict = found.cid.toString() === row.cid ? 'same' : 'forked'
        this.remember(root, Infinity)
      } catch (err) {
        if (!(err instanceof NoVerdict)) throw err
        this.remember(root, (this.checked.get(root) ?? 0) + 1)
        log.debug(`no verdict on this node's own head at seq ${head.seq} (root ${root}): ${err.message}`)
      }
    } else this.remember(root, Infinity)
    metrics.ownHeadsChecked.inc({ result: verdict })
    if (verdict !== 'forked' || row == null || found == null) return
    events.safeDispatchEvent('self:diverged', {
      detail: { seq: head.seq, root, outbox_seq: store.outbox.lastSeq(), fork: { file: `${found.name} (${found.cid.toString()})`, own: `${row.bucket}/${row.name} (${row.cid})` } }
    })
  }

  private remember(root: string, attempts: number): void {
    this.checked.delete(root)
    this.checked.set(root, attempts)
    if (this.checked.size > REMEMBERED_ROOTS) this.checked.delete(this.checked.keys().next().value as string)
  }

  /**
   * @returns the event file at `seq` in the tree of `root`, looked for in the tree's latest hour bucket (a
   * copy's file at its head's seq is its newest) and in the hour bucket of this node's own file at that seq;
   * undefined when neither holds it
   * @throws NoVerdict when the blocks cannot be had within the bounds
   */
  private async fileAt(root: CID, seq: number, ownBucket: string, ownName: string, carried: ReadonlyArray<{ cid: CID; bytes: Uint8Array }>): Promise<{ name: string; cid: CID } | undefined> {
    const signal = AbortSignal.any([AbortSignal.timeout(this.init.timeoutMs), this.abort.signal])
    const byCid = new Map(carried.map((b) => [b.cid.toString(), b.bytes]))
    const nodes = new Map<string, DirectoryNode>()
    let blocks = 0
    let bytes = 0
    const read = async (cid: CID): Promise<DirectoryNode> => {
      const known = nodes.get(cid.toString())
      if (known != null) return known
      if (!isDagPb(cid)) throw new NoVerdict(`${cid.toString()} is not a directory`)
      if (++blocks > FORK_CHECK_BLOCKS) throw new NoVerdict(`the tree needs more than ${FORK_CHECK_BLOCKS} blocks`)
      let got = byCid.get(cid.toString())
      if (got == null) {
        try {
          got = await this.init.getBlock(cid, signal)
        } catch (err) {
          throw new NoVerdict(`block ${cid.toString()}: ${(err as Error).message}`)
        }
      }
      bytes += got.length
      if (bytes > FORK_CHECK_BYTES) throw new NoVerdict(`the tree needs more than ${FORK_CHECK_BYTES} bytes`)
      try {
        const node = readDirectoryNode(got)
        nodes.set(cid.toString(), node)
        return node
      } catch (err) {
        throw new NoVerdict(`block ${cid.toString()}: ${(err as Error).message}`)
      }
    }
    const top = await read(root)
    const days = top.entries.filter((e) => isDayName(e.name))
    const latestDay = days.reduce<(typeof days)[number] | undefined>((a, e) => (a == null || e.name > a.name ? e : a), undefined)
    // The latest hour first: a head's newest file is the one at its seq, and this node's own bucket may be an
    // older hour too big to read whole (a copy restored from a backup publishes the seq later than this node did).
    const buckets = [ownBucket]
    if (latestDay != null) {
      const hours = (await read(latestDay.cid)).entries.filter((e) => isHourName(e.name))
      const latestHour = hours.reduce<(typeof hours)[number] | undefined>((a, e) => (a == null || e.name > a.name ? e : a), undefined)
      if (latestHour != null && `${latestDay.name}/${latestHour.name}` !== ownBucket) buckets.unshift(`${latestDay.name}/${latestHour.name}`)
    }
    const hourOf = async (bucket: string): Promise<CID | undefined> => {
      const day = days.find((e) => e.name === bucket.slice(0, 10))
      return day == null ? undefined : (await read(day.cid)).entries.find((e) => e.name === bucket.slice(11))?.cid
    }
    // This node's own file is looked up by its name's hash, a block a level, however many files the hour holds.
    const ownHour = await hourOf(ownBucket)
    if (ownHour != null) {
      const own = await this.byName(ownHour, ownName, read)
      if (own != null) return { name: `${ownBucket}/${ownName}`, cid: own }
    }
    for (const bucket of buckets) {
      const hour = bucket === ownBucket ? ownHour : await hourOf(bucket)
      if (hour == null) continue
      // Another file at `seq` has a name this node cannot know, placed by its hash: every shard is looked in,
      // those the head's message carried first (the path to the commit's newest file, a copy's at its seq).
      const shards = [hour]
      while (shards.length > 0) {
        const node = await read(shards.pop()!)
        for (const e of node.entries) if (parseFileName(e.name)?.seq === seq) return { name: `${bucket}/${e.name}`, cid: e.cid }
        const subs = node.shards.map((x) => x.cid)
        shards.push(...subs.filter((c) => !byCid.has(c.toString())), ...subs.filter((c) => byCid.has(c.toString())))
      }
    }
    return undefined
  }

  /** @returns the CID of the entry `name` in the HAMT hour bucket `hour`, following its hash; undefined when it is not there */
  private async byName(hour: CID, name: string, read: (cid: CID) => Promise<DirectoryNode>): Promise<CID | undefined> {
    const hashes: Uint8Array[] = []
    let node = await read(hour)
    for (let level = 0; ; level++) {
      if (node.fanout === 0) return node.entries.find((e) => e.name === name)?.cid
      const label = labelAt(name, level, node.fanout, hashes)
      const entry = node.entries.find((e) => e.label === label)
      if (entry != null) return entry.name === name ? entry.cid : undefined
      const shard = node.shards.find((x) => x.label === label)
      if (shard == null) return undefined
      node = await read(shard.cid)
    }
  }
}
