/** Late heads remembered as relayed; beyond it the oldest is forgotten. */
const MAX_REMEMBERED = 4096

/**
 * The late heads (older than a producer's stored head, ahead of what this node processed) that this node
 * relayed, so that it relays each (producer, seq) once. The blocks a hint carries are outside the head's
 * signature: anyone can send one late head again and again with other blocks, each copy a gossip message
 * of its own, and without this every node would relay every copy for as long as it lags that producer.
 * Honest copies of one hint are the same bytes, which gossipsub's seen cache drops before they get here.
 * Holds at most `max` entries: an attacker cannot add any, only producers' signed seqs can.
 */
export class LateRelays {
  private readonly max: number
  /** `producer/seq`, oldest first */
  private readonly relayed = new Set<string>()

  constructor(max = MAX_REMEMBERED) {
    this.max = max
  }

  /** @returns true the first time it is asked for a (producer, seq) it still remembers, and remembers it */
  first(producer: string, seq: number): boolean {
    const key = `${producer}/${seq}`
    if (this.relayed.has(key)) return false
    this.relayed.add(key)
    if (this.relayed.size > this.max) this.relayed.delete(this.relayed.values().next().value!)
    return true
  }
}
