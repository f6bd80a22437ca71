import { byteStream, lpStream, type ByteStream } from '@libp2p/utils'
import { equals } from 'uint8arrays/equals'
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import type { Log } from '../log/logger.ts'
import { MAX_HEAD_BYTES } from '../model/head.ts'
import { runsOf } from '../util/runs.ts'

/** The protocol on which peers push the signed heads they know to each other. */
export const HEADS_PROTOCOL = '/cairn/heads/1.0.0'

/** A receiver refuses a push that announces more heads than this (older nodes do too). */
const MAX_HEADS_PER_PUSH = 10_000
/** A sender splits its heads into pushes (one stream each) of at most this many heads… */
const SPLIT_HEADS = 1000
/** …and this many bytes (a single head may be larger, up to MAX_HEAD_BYTES). */
const SPLIT_BYTES = 1024 * 1024
/** What a receiver buffers of a push before reading it: a split push fits with room to spare. */
const READ_BUFFER_BYTES = 4 * SPLIT_BYTES
/** An oversized head is read past in pieces of this size, never held whole. */
const SKIP_CHUNK = 64 * 1024
/** How long one push may take to arrive. */
const PUSH_TIMEOUT_MS = 10_000
/** A peer gets the heads again after this long even when none changed since its last push. */
const REPUSH_UNCHANGED_MS = 60_000
/**
 * A failed first push to a peer is tried again this long after, then twice as long after each next failure, up
 * to GREET_TRIES pushes in all (1, 2 and 4 s: within the default --publish-fence of 10 s whatever
 * --announce-interval is); the re-announce makes good what still failed.
 */
const GREET_RETRY_MS = 1000
const GREET_TRIES = 4

export interface HeadExchangeInit {
  libp2p: Libp2p
  /** the signed heads to push */
  heads: () => Uint8Array[]
  /** the signed head this node holds of `producer`, if any: a peer's own goes first in the push it gets on connecting */
  headOf?: (producer: string) => Uint8Array | undefined
  /** receives each pushed head */
  onHead: (bytes: Uint8Array, from: PeerId) => Promise<void>
  /** a pushed item skipped (over MAX_HEAD_BYTES); the rest of the push is still read */
  onRejected?: (peer: string, reason: string, detail: string) => void
  /** a push from `peer` was read whole, each of its heads given to onHead */
  onPushed?: (peer: string) => void
  log: Log
  /** how long after a failed first push it is tried again (GREET_RETRY_MS; tests) */
  greetRetryMs?: number
}

/**
 * Pushes every known head to a peer over a direct stream: when a peer connects, and on the re-announce
 * timer. The heads go in pushes of at most SPLIT_HEADS heads and SPLIT_BYTES, one stream each; a receiver
 * reads each item up to MAX_HEAD_BYTES (the limit gossip and the parse use too) and skips, counted, an item
 * over it, so one bad head never costs the others of its push. It does not depend on gossipsub, so a node that was away catches up from whoever is online.
 * On the timer a peer is skipped while none of the heads changed since its last push (up to a minute):
 * with ten nodes, re-pushing the same heads to every peer every few seconds was half of an idle node's CPU.
 */
export class HeadExchange {
  private readonly init: HeadExchangeInit
  /** per peer, the heads it was last pushed, and when */
  private readonly pushed = new Map<string, { heads: Uint8Array[]; at: number }>()
  /** peers a first push is under way to (see greet) */
  private readonly greeting = new Set<string>()
  /**
   * peers greeted on their connection, whether or not that push got through: a push from one of them is not
   * answered with another greet (a peer that takes no push whole would otherwise get every head this node
   * knows for each push of nothing it sends); a failed greet is tried again a few times (greet), then made good
   * by the re-announce (pushAll)
   */
  private readonly greeted = new Set<string>()
  /**
   * per peer, the timer of its failed first push's next try: cleared when the peer disconnects (a try on its next
   * connection would mark that one greeted, and its greet would not be answered) and by stop()
   */
  private readonly greetRetries = new Map<string, ReturnType<typeof setTimeout>>()
  /** set by stop(): no greet starts after it */
  private stopped = false
  private readonly onIdentify = (evt: CustomEvent<{ peerId: PeerId; protocols: string[] }>): void => {
    if (evt.detail.protocols.includes(HEADS_PROTOCOL)) void this.greet(evt.detail.peerId)
  }

  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const id = evt.detail.toString()
    this.pushed.delete(id)
    this.greeted.delete(id)
    this.dropGreetRetry(id, 'the peer disconnected')
  }

  constructor(init: HeadExchangeInit) {
    this.init = init
  }

  async start(): Promise<void> {
    this.stopped = false
    await this.init.libp2p.handle(
      HEADS_PROTOCOL,
      (stream, connection) => {
        void this.receive(stream, connection)
      },
      { maxInboundStreams: 8 }
    )
    this.init.libp2p.addEventListener('peer:identify', this.onIdentify as EventListener)
    this.init.libp2p.addEventListener('peer:disconnect', this.onDisconnect as EventListener)
    // A peer that connected while libp2p ran but before this handler was there identified this node without
    // the protocol, and pushes nothing: this node greets it, and a greeted peer greets back (receive).
    for (const peer of new Map(this.init.libp2p.getConnections().map((c) => [c.remotePeer.toString(), c.remotePeer])).values()) {
      const known = await this.init.libp2p.peerStore.get(peer).catch(() => undefined)
      if (known?.protocols.includes(HEADS_PROTOCOL) === true) void this.greet(peer)
    }
  }

  /**
   * The first push to a peer on a connection: sent even with no head (a peer that just started holds its
   * publishes until a push, see PublishFence), the peer's own head first, so that the first part of a split
   * push carries it (it is sent twice then). One that fails is tried again (GREET_RETRY_MS) while the peer
   * stays connected and gets no other whole push.
   *
   * @param tries how many pushes of it failed before
   */
  private async greet(peer: PeerId, tries = 0): Promise<void> {
    const id = peer.toString()
    // A peer already gone (its disconnect handled before this greet started: an identify or a greet-back handled
    // late) is not dialled, nor remembered as greeted: no disconnect is left to forget it.
    if (this.stopped || this.greeting.has(id)) return
    if (this.init.libp2p.getConnections(peer).length === 0) {
      // The decision is logged for each greet passed over so (tests wait on it).
      this.init.log.debug(`not greeting ${id}: it is no longer connected`, { peer: id, reason: 'greet_peer_gone' })
      return
    }
    this.greeting.add(id)
    this.greeted.add(id)
    try {
      // The heads are read from the database, which a stop closes: a greet a push started as the node
      // stopped finds it closed, and is dropped.
      await this.push(peer, this.init.heads(), { empty: true, first: this.init.headOf?.(id) })
    } catch (err) {
      this.init.log.debug(`cannot greet ${id}: ${(err as Error).message}`, { peer: id, reason: 'head_push_failed' })
    } finally {
      this.greeting.delete(id)
    }
    if (this.pushed.has(id)) return
    // Invariant: a greet whose push failed logs its next try (greet_retry) or that none comes (greet_tries_ended,
    // logged too when a disconnect or stop drops the next try); a greet of a peer gone on a disconnect meanwhile
    // is no longer on this connection, and is tried no more.
    const end = this.stopped ? 'the exchange stopped' : !this.greeted.has(id) ? 'the peer disconnected' : tries + 1 >= GREET_TRIES ? `all ${GREET_TRIES} tries failed` : undefined
    if (end != null) {
      this.init.log.debug(`no more tries to greet ${id}: ${end}`, { peer: id, reason: 'greet_tries_ended' })
      return
    }
    clearTimeout(this.greetRetries.get(id))
    const delay = (this.init.greetRetryMs ?? GREET_RETRY_MS) * 2 ** tries
    const timer = setTimeout(() => {
      this.greetRetries.delete(id)
      if (!this.pushed.has(id)) void this.greet(peer, tries + 1)
    }, delay)
    timer.unref?.()
    this.greetRetries.set(id, timer)
    this.init.log.debug(`greeting ${id} again in ${delay} ms (try ${tries + 2} of ${GREET_TRIES})`, { peer: id, reason: 'greet_retry' })
  }

  /** Clears `id`'s greet try that waits, if any: it is tried no more (`why`). */
  private dropGreetRetry(id: string, why: string): void {
    const timer = this.greetRetries.get(id)
    if (timer == null) return
    clearTimeout(timer)
    this.greetRetries.delete(id)
    this.init.log.debug(`no more tries to greet ${id}: ${why}`, { peer: id, reason: 'greet_tries_ended' })
  }

  async stop(): Promise<void> {
    this.stopped = true
    for (const id of [...this.greetRetries.keys()]) this.dropGreetRetry(id, 'the exchange stopped')
    this.init.libp2p.removeEventListener('peer:identify', this.onIdentify as EventListener)
    this.init.libp2p.removeEventListener('peer:disconnect', this.onDisconnect as EventListener)
    this.pushed.clear()
    this.greeted.clear()
    await this.init.libp2p.unhandle(HEADS_PROTOCOL)
  }

  /**
   * Pushes all known heads to every connected peer.
   *
   * @param options.changed only to peers whose last push was of other heads, or over a minute ago
   */
  async pushAll(options: { changed?: boolean } = {}): Promise<void> {
    const heads = this.init.heads()
    const now = Date.now()
    const peers = new Map(this.init.libp2p.getConnections().map((c) => [c.remotePeer.toString(), c.remotePeer]))
    await Promise.allSettled(
      [...peers].map(async ([id, p]) => {
        const last = this.pushed.get(id)
        if (options.changed === true && last != null && now - last.at < REPUSH_UNCHANGED_MS && sameHeads(last.heads, heads)) return
        // A peer with no whole push since it connected (the first failed) may be holding its publishes for
        // one: its own head goes first, as in the first push.
        await this.push(p, heads, { first: last == null ? this.init.headOf?.(id) : undefined })
      })
    )
  }

  /**
   * Pushes all known heads (or `heads`) to one peer, split into pushes of bounded size, one after the other.
   *
   * @param options.empty push (a count of 0) even when there is no head
   * @param options.first a head sent before `heads` (in the first part), though `heads` may hold it too: the
   * peer's last push is still recorded as `heads`, for the re-announce to compare
   */
  async push(peer: PeerId, heads = this.init.heads(), options: { empty?: boolean; first?: Uint8Array } = {}): Promise<void> {
    if (heads.length === 0 && options.empty !== true) return
    const id = peer.toString()
    const sent = options.first == null ? heads : [options.first, ...heads]
    for (const part of sent.length === 0 ? [[]] : splitPushes(sent)) {
      if (!(await this.pushPart(peer, part))) {
        this.pushed.delete(id)
        return
      }
    }
    this.pushed.set(id, { heads, at: Date.now() })
  }

  /** @returns whether one push reached the peer */
  private async pushPart(peer: PeerId, heads: readonly Uint8Array[]): Promise<boolean> {
    const id = peer.toString()
    let stream: Stream | undefined
    try {
      stream = await this.init.libp2p.dialProtocol(peer, HEADS_PROTOCOL, { signal: AbortSignal.timeout(5000) })
      const lp = lpStream(stream)
      await lp.writeV([new TextEncoder().encode(String(heads.length)), ...heads], { signal: AbortSignal.timeout(5000) })
      await stream.close({ signal: AbortSignal.timeout(5000) })
      return true
    } catch (err) {
      this.init.log.debug(`cannot push heads to ${id}: ${(err as Error).message}`, { peer: id, reason: 'head_push_failed' })
      stream?.abort(err as Error)
      return false
    }
  }

  private async receive(stream: Stream, connection: Connection): Promise<void> {
    const from = connection.remotePeer
    const peer = from.toString()
    try {
      const bytes = byteStream(stream, { maxBufferSize: READ_BUFFER_BYTES })
      const signal = AbortSignal.timeout(PUSH_TIMEOUT_MS)
      const first = await readItem(bytes, 32, signal)
      const count = first == null ? Number.NaN : Number(new TextDecoder().decode(first))
      if (!Number.isInteger(count) || count < 0 || count > MAX_HEADS_PER_PUSH) throw new Error(`bad head count ${count}`)
      for (let i = 0; i < count; i++) {
        const item = await readItem(bytes, MAX_HEAD_BYTES, signal)
        if (item == null) {
          this.init.onRejected?.(peer, 'oversized_head', `a pushed head is over the limit of ${MAX_HEAD_BYTES} bytes; skipped`)
          continue
        }
        await this.init.onHead(item, from)
      }
      this.init.onPushed?.(peer)
      await stream.close({ signal: AbortSignal.timeout(5000) }).catch(() => {})
      // A peer that pushed on a connection this node has not pushed on yet gets its first push now; once only
      // (greeted), so that pushes from a peer whose own pushes keep failing start no push each.
      if (!this.pushed.has(peer)) {
        if (!this.greeted.has(peer)) void this.greet(from)
        // The decision not to greet it again is logged for each such push (tests wait on it).
        else this.init.log.debug(`not greeting ${peer} back: it was greeted on this connection, though no push to it got through`, { peer, reason: 'greet_back_declined' })
      }
    } catch (err) {
      this.init.log.debug(`bad head push from ${peer}: ${(err as Error).message}`, { peer, reason: 'bad_head_push' })
      stream.abort(err as Error)
    }
  }
}

/** @returns `heads` in runs of at most SPLIT_HEADS heads and SPLIT_BYTES (a larger head alone), in order */
function splitPushes(heads: readonly Uint8Array[]): Uint8Array[][] {
  return runsOf(heads, SPLIT_HEADS, SPLIT_BYTES, (h) => h.length)
}

/**
 * Reads one length-prefixed item (an unsigned varint, then the bytes).
 *
 * @returns its bytes, or undefined when it is over `max`: then it was read past in SKIP_CHUNK pieces
 * @throws when the stream ends early, the prefix is over 8 bytes, or the signal aborts
 */
async function readItem(bytes: ByteStream<Stream>, max: number, signal: AbortSignal): Promise<Uint8Array | undefined> {
  let length = 0
  for (let i = 0; ; i++) {
    if (i === 8) throw new Error('a length prefix over 8 bytes')
    const byte = (await bytes.read({ bytes: 1, signal })).get(0)
    length += (byte & 0x7f) * 2 ** (7 * i)
    if ((byte & 0x80) === 0) break
  }
  if (length === 0) return new Uint8Array(0)
  if (length <= max) return (await bytes.read({ bytes: length, signal })).subarray()
  for (let left = length; left > 0; left -= SKIP_CHUNK) await bytes.read({ bytes: Math.min(left, SKIP_CHUNK), signal })
  return undefined
}

function sameHeads(a: readonly Uint8Array[], b: readonly Uint8Array[]): boolean {
  return a.length === b.length && a.every((h, i) => equals(h, b[i]))
}
