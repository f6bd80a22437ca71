import { describe, expect, test } from 'bun:test'
import { OwnEventsWatch } from '../../src/members/ownEvents.ts'

const SELF = 'self'
const PEER = 'peer'
const OTHER = 'other'

/** @returns a watch over SELF, with PEER and OTHER members and a clock the test moves */
function watch(options: { lastSeq?: number; members?: Set<string> } = {}): { w: OwnEventsWatch; clock: { now: number }; seq: { last: number }; members: Set<string> } {
  const clock = { now: 1_000_000 }
  const seq = { last: options.lastSeq ?? 10 }
  const members = options.members ?? new Set([SELF, PEER, OTHER])
  const w = new OwnEventsWatch({
    self: SELF,
    afterMs: 3000,
    lastSeq: () => seq.last,
    counts: (p) => p !== SELF && members.has(p),
    known: (p) => members.has(p),
    now: () => clock.now
  })
  return { w, clock, seq, members }
}

describe('OwnEventsWatch', () => {
  test("a member whose heads acknowledge more of others' events but none of this node's past a seq, for afterMs, refuses them: said once", () => {
    const { w, clock } = watch()
    expect(w.observe(PEER, { [SELF]: 4, [OTHER]: 1 })).toBeUndefined()
    clock.now += 1000
    expect(w.observe(PEER, { [SELF]: 4, [OTHER]: 2 })).toBeUndefined()
    expect(w.refusing()).toEqual([])
    clock.now += 2000
    expect(w.observe(PEER, { [SELF]: 4, [OTHER]: 3 })).toEqual({ change: 'refused', peer: { peer_id: PEER, after_seq: 4, since: new Date(1_000_000).toISOString() } })
    clock.now += 5000
    expect(w.observe(PEER, { [SELF]: 4, [OTHER]: 4 })).toBeUndefined()
    expect(w.refusing()).toEqual([{ peer_id: PEER, after_seq: 4, since: new Date(1_000_000).toISOString() }])
    // It takes them again: said once too.
    expect(w.observe(PEER, { [SELF]: 10, [OTHER]: 5 })).toEqual({ change: 'taken', peer: { peer_id: PEER, after_seq: 4, since: new Date(1_000_000).toISOString() } })
    expect(w.refusing()).toEqual([])
  })

  test('a member that is merely slow (its acknowledgement moves, however slowly) never counts', () => {
    const { w, clock } = watch({ lastSeq: 1000 })
    for (let ack = 1; ack < 30; ack++) {
      clock.now += 2999
      expect(w.observe(PEER, { [SELF]: ack, [OTHER]: ack })).toBeUndefined()
    }
    expect(w.refusing()).toEqual([])
  })

  test('a member that moves on nothing (its acknowledgements of others stand still too, or only its own seq grows) does not count: it is stuck, not refusing', () => {
    const { w, clock } = watch()
    w.observe(PEER, { [SELF]: 4, [OTHER]: 7, [PEER]: 1 })
    for (let i = 2; i < 10; i++) {
      clock.now += 5000
      expect(w.observe(PEER, { [SELF]: 4, [OTHER]: 7, [PEER]: i })).toBeUndefined()
    }
    // Acknowledgements of producers this node does not know (made-up ids) are no movement either.
    clock.now += 5000
    expect(w.observe(PEER, { [SELF]: 4, [OTHER]: 7, stranger: 99 })).toBeUndefined()
    expect(w.refusing()).toEqual([])
  })

  test('a member that has taken every event of this node, and a node that published nothing, are no stall', () => {
    const { w, clock } = watch()
    w.observe(PEER, { [SELF]: 10, [OTHER]: 1 })
    clock.now += 5000
    expect(w.observe(PEER, { [SELF]: 10, [OTHER]: 2 })).toBeUndefined()
    const idle = watch({ lastSeq: 0 })
    idle.w.observe(PEER, { [OTHER]: 1 })
    idle.clock.now += 5000
    expect(idle.w.observe(PEER, { [OTHER]: 2 })).toBeUndefined()
    expect(idle.w.refusing()).toEqual([])
  })

  test("a removed member's refusal is no news: its heads do not count, and one that refused is forgotten once removed", () => {
    const { w, clock, members } = watch()
    w.observe(PEER, { [SELF]: 4, [OTHER]: 1 })
    clock.now += 5000
    expect(w.observe(PEER, { [SELF]: 4, [OTHER]: 2 })?.change).toBe('refused')
    members.delete(PEER)
    expect(w.refusing()).toEqual([])
    expect(w.observe(PEER, { [SELF]: 4, [OTHER]: 3 })).toBeUndefined()
    // A head of this node itself never counts.
    expect(w.observe(SELF, { [SELF]: 0, [OTHER]: 3 })).toBeUndefined()
    expect(w.refusing()).toEqual([])
  })
})
