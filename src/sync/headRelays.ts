/** Heads remembered as relayed; beyond it the oldest is forgotten. */
const MAX_REMEMBERED = 4096

/**
 * The heads, new or late (older than a producer's stored head, ahead of what this node processed), that
 * this node relayed, so that it relays each signed head (producer, seq, hlc) once. The blocks a hint
 * carries are outside the head's signature, and its bytes are not canonical: anyone can send one head again
 * and again with other blocks, each copy a gossip message of its own, and without this every node would
 * relay every copy of a late head for as long as it lags that producer, and every copy of a new head that
 * it validates before the first is applied (gossipsub validates a frame's messages concurrently).
 * Honest copies of one hint are the same bytes, which gossipsub's seen cache drops before they get here.
 * Holds at most `max` entries: an attacker cannot add any, only producers' signed heads can.
 */
export class HeadRelays {
  private readonly max: number
  /** `producer/seq/hlc`, oldest first */
  private readonly relayed = new Set<string>()

  constructor(max = MAX_REMEMBERED) {
    this.max = max
  }

  /** @returns true the first time it is asked for a signed head it still remembers, and remembers it */
  first(producer: string, seq: number, hlc: string): boolean {
    const key = `${producer}/${seq}/${hlc}`
    if (this.relayed.has(key)) return false
    this.relayed.add(key)
    if (this.relayed.size > this.max) this.relayed.delete(this.relayed.values().next().value!)
    return true
  }
}
