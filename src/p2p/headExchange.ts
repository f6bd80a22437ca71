import { lpStream } from '@libp2p/utils'
import { equals } from 'uint8arrays/equals'
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import type { Log } from '../log/logger.ts'

/** The protocol on which peers push the signed heads they know to each other. */
export const HEADS_PROTOCOL = '/cairn/heads/1.0.0'

const MAX_HEADS_PER_PUSH = 10_000
const MAX_HEAD_BYTES = 64 * 1024
/** A peer gets the heads again after this long even when none changed since its last push. */
const REPUSH_UNCHANGED_MS = 60_000

export interface HeadExchangeInit {
  libp2p: Libp2p
  /** the signed heads to push */
  heads: () => Uint8Array[]
  /** receives each pushed head */
  onHead: (bytes: Uint8Array, from: PeerId) => Promise<void>
  log: Log
}

/**
 * Pushes every known head to a peer over a direct stream: when a peer connects, and on the re-announce
 * timer. It does not depend on gossipsub, so a node that was away catches up from whoever is online.
 * On the timer a peer is skipped while none of the heads changed since its last push (up to a minute):
 * with ten nodes, re-pushing the same heads to every peer every few seconds was half of an idle node's CPU.
 */
export class HeadExchange {
  private readonly init: HeadExchangeInit
  /** per peer, the heads it was last pushed, and when */
  private readonly pushed = new Map<string, { heads: Uint8Array[]; at: number }>()
  private readonly onIdentify = (evt: CustomEvent<{ peerId: PeerId; protocols: string[] }>): void => {
    if (evt.detail.protocols.includes(HEADS_PROTOCOL)) void this.push(evt.detail.peerId)
  }

  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    this.pushed.delete(evt.detail.toString())
  }

  constructor(init: HeadExchangeInit) {
    this.init = init
  }

  async start(): Promise<void> {
    await this.init.libp2p.handle(
      HEADS_PROTOCOL,
      (stream, connection) => {
        void this.receive(stream, connection)
      },
      { maxInboundStreams: 8 }
    )
    this.init.libp2p.addEventListener('peer:identify', this.onIdentify as EventListener)
    this.init.libp2p.addEventListener('peer:disconnect', this.onDisconnect as EventListener)
  }

  async stop(): Promise<void> {
    this.init.libp2p.removeEventListener('peer:identify', this.onIdentify as EventListener)
    this.init.libp2p.removeEventListener('peer:disconnect', this.onDisconnect as EventListener)
    this.pushed.clear()
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
        await this.push(p, heads)
      })
    )
  }

  /** Pushes all known heads (or `heads`) to one peer. */
  async push(peer: PeerId, heads = this.init.heads()): Promise<void> {
    if (heads.length === 0) return
    const id = peer.toString()
    let stream: Stream | undefined
    try {
      stream = await this.init.libp2p.dialProtocol(peer, HEADS_PROTOCOL, { signal: AbortSignal.timeout(5000) })
      const lp = lpStream(stream, { maxDataLength: MAX_HEAD_BYTES })
      await lp.writeV([new TextEncoder().encode(String(heads.length)), ...heads], { signal: AbortSignal.timeout(5000) })
      await stream.close({ signal: AbortSignal.timeout(5000) })
      this.pushed.set(id, { heads, at: Date.now() })
    } catch (err) {
      this.pushed.delete(id)
      this.init.log.debug(`cannot push heads to ${id}: ${(err as Error).message}`, { peer: id })
      stream?.abort(err as Error)
    }
  }

  private async receive(stream: Stream, connection: Connection): Promise<void> {
    const from = connection.remotePeer
    try {
      const lp = lpStream(stream, { maxDataLength: MAX_HEAD_BYTES })
      const signal = AbortSignal.timeout(10_000)
      const count = Number(new TextDecoder().decode((await lp.read({ signal })).subarray()))
      if (!Number.isInteger(count) || count < 0 || count > MAX_HEADS_PER_PUSH) throw new Error(`bad head count ${count}`)
      for (let i = 0; i < count; i++) {
        const bytes = (await lp.read({ signal })).subarray()
        await this.init.onHead(bytes, from)
      }
      await stream.close({ signal: AbortSignal.timeout(5000) }).catch(() => {})
    } catch (err) {
      this.init.log.debug(`bad head push from ${from.toString()}: ${(err as Error).message}`, { peer: from.toString() })
      stream.abort(err as Error)
    }
  }
}

function sameHeads(a: readonly Uint8Array[], b: readonly Uint8Array[]): boolean {
  return a.length === b.length && a.every((h, i) => equals(h, b[i]))
}
