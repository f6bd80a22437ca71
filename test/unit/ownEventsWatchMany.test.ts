import { expect, test } from 'bun:test'
import { OwnEventsWatch } from '../../src/members/ownEvents.ts'

// A stall must see any known producer move, not a subset: kept to the first 64 of a head's acks (key order),
// a member refusing this node's events in a network where only producers past those 64 publish was never told
// from one that is stuck.
test('a member refusing this node in a network of 100 members, where only a producer past the first 64 publishes, is seen', () => {
  const clock = { now: 1_000_000 }
  const others = Array.from({ length: 100 }, (_, i) => `p${String(i).padStart(3, '0')}`)
  const members = new Set(['self', 'peer', ...others])
  const w = new OwnEventsWatch({
    self: 'self',
    afterMs: 3000,
    lastSeq: () => 10,
    counts: (p) => p !== 'self' && members.has(p),
    known: (p) => members.has(p),
    now: () => clock.now
  })
  const acks = (active: number): Record<string, number> => ({ ...Object.fromEntries(others.map((p) => [p, p === 'p090' ? active : 5])), self: 4 })
  expect(w.observe('peer', acks(1))).toBeUndefined()
  clock.now += 4000
  expect(w.observe('peer', acks(2))?.change).toBe('refused')
})
