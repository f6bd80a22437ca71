import { describe, expect, test } from 'bun:test'
import { HeadLimiter } from '../../src/p2p/headLimiter.ts'
import { waitFor } from '../helpers/process.ts'

const head = (producer: string, seq: number): Uint8Array => new TextEncoder().encode(JSON.stringify({ head: { producer, seq }, sig: 'x' }))
const seqOf = (b: Uint8Array): number => JSON.parse(new TextDecoder().decode(b)).head.seq

describe('HeadLimiter', () => {
  test('heads over the rate wait for a token, and only the newest per producer is kept', async () => {
    const accepted: number[] = []
    let coalesced = 0
    const dropped: string[] = []
    const limiter = new HeadLimiter({
      rate: 5,
      accept: async (b) => {
        accepted.push(seqOf(b))
      },
      onCoalesced: () => {
        coalesced++
      },
      onDropped: (_p, d) => {
        dropped.push(d)
      }
    })
    for (let seq = 1; seq <= 20; seq++) await limiter.offer(head('P', seq), 'peer1')
    expect(accepted).toEqual([1, 2, 3, 4, 5])
    expect(coalesced).toBe(14)
    // an older head arriving late does not replace the newer one waiting
    await limiter.offer(head('P', 7), 'peer1')
    await waitFor('the waiting head to get a token', () => accepted.length === 6, 2000, 10)
    expect(accepted).toEqual([1, 2, 3, 4, 5, 20])
    expect(dropped).toEqual([])
    // another peer has its own budget
    await limiter.offer(head('P', 21), 'peer2')
    expect(accepted.at(-1)).toBe(21)
    limiter.stop()
  })

  test('admit (the gossip validator) answers at once under the rate; over it, the newest head per producer waits for a token', async () => {
    const limiter = new HeadLimiter({ rate: 2, accept: async () => {}, onDropped: () => {} })
    expect(limiter.admit(head('P', 1), 'peer')).toBe(true)
    expect(limiter.admit(head('P', 2), 'peer')).toBe(true)
    const third = limiter.admit(head('P', 3), 'peer')
    const fourth = limiter.admit(head('P', 4), 'peer')
    expect(third).toBeInstanceOf(Promise)
    expect(limiter.admit(head('P', 3), 'peer')).toBe(false)
    expect(await third).toBe(false)
    expect(await fourth).toBe(true)
    const stopped = limiter.admit(head('Q', 1), 'peer')
    limiter.stop()
    expect(await stopped).toBe(false)
  })

  test('an unreadable head over the rate is dropped and reported', async () => {
    const dropped: string[] = []
    const limiter = new HeadLimiter({
      rate: 1,
      accept: async () => {},
      onDropped: (peer, d) => {
        dropped.push(`${peer}: ${d}`)
      }
    })
    await limiter.offer(head('P', 1), 'p')
    await limiter.offer(new TextEncoder().encode('garbage'), 'p')
    expect(dropped).toEqual(['p: an unreadable head over the rate of 1 per second'])
    limiter.stop()
  })
})
