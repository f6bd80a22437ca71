import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream'

/** What the window update rule reads of a yamux stream. */
interface WindowState {
  state: StreamState
  recvWindow: number
  recvWindowCapacity: number
}

let installed = false

/**
 * Makes yamux send a window update only once half of a stream's receive window is used, as go-yamux and
 * rust-yamux do. @chainsafe/libp2p-yamux sends one after every data frame it receives: for a gossip hint,
 * a bitswap message or a head push, an encrypted frame back through noise, the private-network cipher
 * and the socket, for every message. Updates that carry a flag (the first frames of a stream) and those
 * of a paused stream go out as before. After each data frame, the window this end still offers is over
 * half the full one: a sender with less than half a window in flight never waits for an update, and one
 * with more waits for the update that the first half triggered, as with go-yamux. The frames on the wire
 * keep their format, so a peer with an unpatched yamux only sees fewer updates. Safe to call more than once.
 */
export function lazyYamuxWindowUpdates(): void {
  if (installed) return
  installed = true
  const proto = YamuxStream.prototype as unknown as { sendWindowUpdate: (this: WindowState) => void }
  const send = proto.sendWindowUpdate
  proto.sendWindowUpdate = function (this: WindowState): void {
    if (canWait(this)) return
    send.call(this)
  }
}

/** @returns whether a stream's window update can wait: it would carry no flag, and over half the window is unused */
export function canWait(s: WindowState): boolean {
  const plain = s.state === StreamState.Established || s.state === StreamState.SYNSent || s.state === StreamState.Finished
  return plain && s.recvWindowCapacity * 2 > s.recvWindow
}
