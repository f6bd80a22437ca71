import { lpStream } from '@libp2p/utils'
import { CID } from 'multiformats/cid'
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import type { Log } from '../log/logger.ts'
import { matchesCid } from '../model/blockCid.ts'

/**
 * Many blocks per round trip, for catch-up. Bitswap moves one want and one block per message and,
 * on this stack, managed about 2,000 event files per second; a walk that needs thousands of files
 * asks a peer for them in batches on one stream instead.
 *
 * Request: a length-prefixed count, then that many length-prefixed CIDs (binary).
 * Response: for each CID, in order, one length-prefixed message: the block, or empty if the peer lacks it.
 * A peer only answers from its own store (it never fetches on someone's behalf); the requester checks
 * every block against its CID, so a lying peer costs a round trip and nothing else.
 */
export const BLOCKS_PROTOCOL = '/cairn/blocks/1.0.0'

/** CIDs in one request. */
export const MAX_BATCH = 1024
const MAX_CID_BYTES = 128
/** The largest block served or accepted: an event file (≤ max-event-size) or a directory shard. */
const MAX_BLOCK_BYTES = 2 * 1024 * 1024

export interface BlockExchangeInit {
  libp2p: Libp2p
  /** a local block, or undefined */
  get: (cid: CID) => Uint8Array | undefined
  log: Log
}

export class BlockExchange {
  private readonly init: BlockExchangeInit
  /** blocks this node has served */
  served = 0

  constructor(init: BlockExchangeInit) {
    this.init = init
  }

  async start(): Promise<void> {
    await this.init.libp2p.handle(
      BLOCKS_PROTOCOL,
      (stream, connection) => {
        void this.serve(stream, connection)
      },
      { maxInboundStreams: 4 }
    )
  }

  async stop(): Promise<void> {
    await this.init.libp2p.unhandle(BLOCKS_PROTOCOL)
  }

  /** @returns whether `peer` is connected and speaks the protocol */
  async supports(peer: PeerId): Promise<boolean> {
    if (this.init.libp2p.getConnections(peer).length === 0) return false
    try {
      return (await this.init.libp2p.peerStore.get(peer)).protocols.includes(BLOCKS_PROTOCOL)
    } catch {
      return false
    }
  }

  /**
   * Asks `peer` for `cids` (at most MAX_BATCH).
   *
   * @returns the blocks it had, each checked against its CID
   */
  async fetch(peer: PeerId, cids: readonly CID[], signal: AbortSignal): Promise<Map<string, Uint8Array>> {
    const found = new Map<string, Uint8Array>()
    if (cids.length === 0) return found
    if (cids.length > MAX_BATCH) throw new RangeError(`at most ${MAX_BATCH} CIDs per request`)
    const stream = await this.init.libp2p.dialProtocol(peer, BLOCKS_PROTOCOL, { signal })
    try {
      const lp = lpStream(stream, { maxDataLength: MAX_BLOCK_BYTES })
      await lp.writeV([new TextEncoder().encode(String(cids.length)), ...cids.map((c) => c.bytes)], { signal })
      for (const cid of cids) {
        const bytes = (await lp.read({ signal })).subarray()
        if (bytes.length === 0) continue
        if (!(await matchesCid(cid, bytes))) throw new Error(`${peer.toString()} sent a block that does not match ${cid.toString()}`)
        found.set(cid.toString(), bytes)
      }
      await stream.close({ signal }).catch(() => {})
    } catch (err) {
      stream.abort(err as Error)
      // What arrived before the failure is good (each block was checked); the rest goes another way.
      if (found.size === 0) throw err
    }
    return found
  }

  private async serve(stream: Stream, connection: Connection): Promise<void> {
    try {
      const lp = lpStream(stream, { maxDataLength: MAX_BLOCK_BYTES })
      const signal = AbortSignal.timeout(60_000)
      const count = Number(new TextDecoder().decode((await lp.read({ signal })).subarray()))
      if (!Number.isInteger(count) || count < 0 || count > MAX_BATCH) throw new Error(`bad block count ${count}`)
      const cids: CID[] = []
      for (let i = 0; i < count; i++) {
        const bytes = (await lp.read({ signal })).subarray()
        if (bytes.length > MAX_CID_BYTES) throw new Error('a CID longer than 128 bytes')
        cids.push(CID.decode(bytes))
      }
      // Write in slices, so a large answer does not sit in memory twice.
      for (let i = 0; i < cids.length; i += 64) {
        const blocks = cids.slice(i, i + 64).map((c) => this.init.get(c) ?? new Uint8Array(0))
        this.served += blocks.filter((b) => b.length > 0).length
        await lp.writeV(blocks, { signal })
      }
      await stream.close({ signal: AbortSignal.timeout(5000) }).catch(() => {})
    } catch (err) {
      this.init.log.debug(`bad block request from ${connection.remotePeer.toString()}: ${(err as Error).message}`, { peer: connection.remotePeer.toString() })
      stream.abort(err as Error)
    }
  }
}
