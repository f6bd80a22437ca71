import type { RPC } from '@libp2p/gossipsub/message'
import type { MessageId, MsgIdStr, PeerIdStr, TopicStr } from '@libp2p/gossipsub/types'
import { toString as uint8ToString } from 'uint8arrays/to-string'

/** The most bytes of gossip messages a node keeps for peers' IWANTs and its own IHAVE gossip. */
export const GOSSIP_CACHE_BYTES = 16 * 1024 * 1024
/** The most gossip messages it keeps, whatever their size. */
export const GOSSIP_CACHE_ENTRIES = 16_384
/** What one cached message costs besides its bytes (the entry, its id strings, the maps): an estimate. */
const ENTRY_OVERHEAD = 256

/** gossipsub's own message id → string (base64), which this cache and gossipsub must share */
export function messageIdToString(msgId: Uint8Array): string {
  return uint8ToString(msgId, 'base64')
}

interface Entry {
  message: RPC.Message
  validated: boolean
  originatingPeers: Set<PeerIdStr>
  iwantCounts: Map<PeerIdStr, number>
  bytes: number
}

type HistoryEntry = MessageId & { topic: TopicStr }

/**
 * gossipsub's message cache (the messages of the last `historyCapacity` heartbeats, which the node gossips
 * about in IHAVEs and serves to IWANTs) with a bound on bytes and entries. gossipsub's own cache keeps every
 * message for its heartbeats whatever their size: a hint carries up to ~128 KiB, and a busy network (or a
 * swarm-key holder flooding the peer-discovery topic, which has no validator) would make it hold hundreds of
 * MiB. Over the bound the oldest messages are dropped first: a peer that then asks for one gets nothing and
 * learns the head from the next announcement or the head exchange, as it does for any message it missed.
 *
 * Implements what `@libp2p/gossipsub` 17 calls on the `messageCache` option (its MessageCache is not
 * exported); test/unit/messageCache.test.ts runs gossip through it.
 */
export class BoundedMessageCache {
  readonly msgs = new Map<MsgIdStr, Entry>()
  /** message ids per heartbeat, newest first; entries whose message was dropped are skipped */
  readonly history: HistoryEntry[][] = []
  notValidatedCount = 0
  /** bytes of the cached messages, with ENTRY_OVERHEAD each */
  bytes = 0
  /** messages dropped to stay within the bounds */
  evicted = 0
  private entries = 0

  constructor(
    private readonly gossip: number,
    historyCapacity: number,
    readonly msgIdToStrFn: (id: Uint8Array) => string = messageIdToString,
    private readonly maxBytes = GOSSIP_CACHE_BYTES,
    private readonly maxEntries = GOSSIP_CACHE_ENTRIES
  ) {
    for (let i = 0; i < historyCapacity; i++) this.history.push([])
  }

  get size(): number {
    return this.msgs.size
  }

  /** @returns true when the message was not cached and now is */
  put(messageId: MessageId, msg: RPC.Message, validated = false): boolean {
    const { msgIdStr } = messageId
    if (this.msgs.has(msgIdStr)) return false
    const bytes = ENTRY_OVERHEAD + (msg.data?.byteLength ?? 0) + (msg.from?.byteLength ?? 0) + (msg.seqno?.byteLength ?? 0) + (msg.signature?.byteLength ?? 0) + (msg.key?.byteLength ?? 0)
    this.msgs.set(msgIdStr, { message: msg, validated, originatingPeers: new Set(), iwantCounts: new Map(), bytes })
    this.history[0].push({ ...messageId, topic: msg.topic })
    this.entries++
    this.bytes += bytes
    if (!validated) this.notValidatedCount++
    this.evictOver()
    return true
  }

  observeDuplicate(msgId: MsgIdStr, fromPeerIdStr: PeerIdStr): void {
    const entry = this.msgs.get(msgId)
    // A validated message was forwarded already: who else sent it no longer matters.
    if (entry != null && !entry.validated) entry.originatingPeers.add(fromPeerIdStr)
  }

  get(msgId: Uint8Array): RPC.Message | undefined {
    return this.msgs.get(this.msgIdToStrFn(msgId))?.message
  }

  getWithIWantCount(msgIdStr: string, p: string): { msg: RPC.Message; count: number } | null {
    const entry = this.msgs.get(msgIdStr)
    if (entry == null) return null
    const count = (entry.iwantCounts.get(p) ?? 0) + 1
    entry.iwantCounts.set(p, count)
    return { msg: entry.message, count }
  }

  getGossipIDs(topics: Set<string>): Map<string, Uint8Array[]> {
    const byTopic = new Map<string, Uint8Array[]>()
    for (let i = 0; i < this.gossip && i < this.history.length; i++) {
      for (const h of this.history[i]) {
        if (this.msgs.get(h.msgIdStr)?.validated !== true || !topics.has(h.topic)) continue
        let ids = byTopic.get(h.topic)
        if (ids == null) {
          ids = []
          byTopic.set(h.topic, ids)
        }
        ids.push(h.msgId)
      }
    }
    return byTopic
  }

  validate(msgId: MsgIdStr): { message: RPC.Message; originatingPeers: Set<PeerIdStr> } | null {
    const entry = this.msgs.get(msgId)
    if (entry == null) return null
    if (!entry.validated) this.notValidatedCount--
    const { message, originatingPeers } = entry
    entry.validated = true
    entry.originatingPeers = new Set()
    return { message, originatingPeers }
  }

  /** Starts a new heartbeat's window, dropping the oldest. */
  shift(): void {
    const oldest = this.history.pop() ?? []
    for (const h of oldest) this.drop(h.msgIdStr)
    this.entries -= oldest.length
    this.history.unshift([])
  }

  remove(msgId: MsgIdStr): { message: RPC.Message; originatingPeers: Set<PeerIdStr> } | null {
    const entry = this.drop(msgId)
    // Its id stays in its window until that window is shifted out (or evicted).
    return entry == null ? null : { message: entry.message, originatingPeers: entry.originatingPeers }
  }

  private drop(msgIdStr: MsgIdStr): Entry | undefined {
    const entry = this.msgs.get(msgIdStr)
    if (entry == null) return undefined
    this.msgs.delete(msgIdStr)
    this.bytes -= entry.bytes
    if (!entry.validated) this.notValidatedCount--
    return entry
  }

  /** Drops the oldest ids (and their messages) until both bounds hold; the newest message always stays. */
  private evictOver(): void {
    for (let w = this.history.length - 1; w >= 0 && (this.bytes > this.maxBytes || this.entries > this.maxEntries); w--) {
      const window = this.history[w]
      let n = 0
      while (n < window.length && (this.bytes > this.maxBytes || this.entries > this.maxEntries) && !(w === 0 && n === window.length - 1)) {
        if (this.drop(window[n].msgIdStr) != null) this.evicted++
        this.entries--
        n++
      }
      window.splice(0, n)
    }
  }
}
