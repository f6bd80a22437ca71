import { base64 } from 'multiformats/bases/base64'
import type { CID } from 'multiformats/cid'
import type { PeerId } from '@libp2p/interface'

/** What announceWanted uses of a Helia block broker (bitswap's): announce, and the want lists when it has them. */
export interface AnnouncingBroker {
  announce?: (cid: CID) => Promise<void>
  bitswap?: {
    getWantlist?: () => Array<{ cid: CID }>
    getPeerWantlist?: (peer: PeerId) => Array<{ cid: CID }> | undefined
  }
}

/**
 * Tells block brokers about blocks written straight to the store, so that a peer that asked for one
 * before it was here gets it now instead of waiting out its fetch timeout; bitswap cancels this node's
 * own want of one (the fetch waiting on it is woken by the caller, not by bitswap). Only the
 * blocks someone wants are announced: bitswap's notify costs two multihash encodings and a promise per
 * block, and announcing every block of a catch-up was 15 % of a receiver's main thread while nobody
 * wanted any of them. A broker whose want lists cannot be read hears of every block.
 *
 * @returns how many announcements were made
 */
export function announceWanted(brokers: readonly AnnouncingBroker[], cids: readonly CID[], peers: readonly PeerId[]): number {
  let made = 0
  if (cids.length === 0) return made
  for (const broker of brokers) {
    if (broker.announce == null) continue
    const wanted = wantedBy(broker, peers)
    if (wanted?.size === 0) continue
    for (const cid of cids) {
      if (wanted != null && !wanted.has(base64.baseEncode(cid.multihash.bytes))) continue
      made++
      void broker.announce(cid).catch(() => {})
    }
  }
  return made
}

/** @returns the multihashes (base64) wanted through `broker` by this node or one of `peers`; undefined when it cannot tell */
function wantedBy(broker: AnnouncingBroker, peers: readonly PeerId[]): Set<string> | undefined {
  const bitswap = broker.bitswap
  const own = bitswap?.getWantlist
  const theirs = bitswap?.getPeerWantlist
  if (typeof own !== 'function' || typeof theirs !== 'function') return undefined
  const wants = [...own.call(bitswap), ...peers.flatMap((p) => theirs.call(bitswap, p) ?? [])]
  return new Set(wants.map((w) => base64.baseEncode(w.cid.multihash.bytes)))
}
