import { describe, expect, test } from 'bun:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { CLAIM_PARSE_BYTES, claimOf, CREDIT_BYTES, HeadLimiter, PEER_FACTOR, type HeadLimiterInit } from '../../src/p2p/headLimiter.ts'
import { hintMessage, signHead } from '../../src/model/head.ts'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { waitFor } from '../helpers/process.ts'

const head = (producer: string, seq: number): Uint8Array => new TextEncoder().encode(JSON.stringify({ head: { producer, seq }, sig: 'x' }))
const seqOf = (b: Uint8Array): number => JSON.parse(new TextDecoder().decode(b)).head.seq
const producerOf = (b: Uint8Array): string => JSON.parse(new TextDecoder().decode(b)).head.producer

/**
 * A limiter that records the producer of each head it has checked; with `news`, every head moved the producer
 * it claims forward (its credit comes back), else none did.
 */
function checking(rate: number, news: boolean, init: Partial<HeadLimiterInit> = {}): { limiter: HeadLimiter; checked: string[] } {
  const checked: string[] = []
  const accept = async (b: Uint8Array): Promise<string | undefined> => {
    checked.push(producerOf(b))
    return news ? producerOf(b) : undefined
  }
  return { limiter: new HeadLimiter({ rate, accept, onDropped: () => {}, ...init }), checked }
}

describe('HeadLimiter', () => {
  test('heads over the rate wait for a token, and only the newest per producer is kept', async () => {
    const accepted: number[] = []
    let coalesced = 0
    const dropped: string[] = []
    const limiter = new HeadLimiter({
      rate: 5,
      accept: async (b) => {
        accepted.push(seqOf(b))
        return undefined
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
    const limiter = new HeadLimiter({ rate: 2, accept: async () => undefined, onDropped: () => {} })
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
      accept: async () => undefined,
      onDropped: (peer, d) => {
        dropped.push(`${peer}: ${d}`)
      }
    })
    await limiter.offer(head('P', 1), 'p')
    await limiter.offer(new TextEncoder().encode('garbage'), 'p')
    expect(dropped).toEqual(['p: an unreadable head over the rate of 1 per second'])
    limiter.stop()
  })

  test('a peer relaying several busy producers passes each at the rate, as long as their heads are news', async () => {
    let coalesced = 0
    // every head is news, from the producer it claims
    const { limiter, checked } = checking(5, true, {
      onCoalesced: () => {
        coalesced++
      }
    })
    // A hub relays four producers, each at its own rate: 20 heads at once, 5 per producer.
    for (let seq = 1; seq <= 5; seq++) for (const p of ['P1', 'P2', 'P3', 'P4']) await limiter.offer(head(p, seq), 'hub')
    expect(checked.length).toBe(20)
    expect(coalesced).toBe(0)
    // One producer over its rate still waits, the newest of its heads kept.
    await limiter.offer(head('P1', 6), 'hub')
    await limiter.offer(head('P1', 7), 'hub')
    expect(checked.length).toBe(20)
    expect(coalesced).toBe(1)
    await waitFor('the newest waiting head of P1', () => checked.length === 21, 2000, 10)
    limiter.stop()
  })

  test('heads that are no news cost at most the rate of checks per peer, however many producers they claim', async () => {
    const dropped: string[] = []
    const { limiter, checked } = checking(5, false, {
      onDropped: (_p, d) => {
        dropped.push(d)
      }
    })
    for (let i = 0; i < 50; i++) await limiter.offer(head(`forged${i}`, 1), 'attacker')
    expect(checked.length).toBe(5)
    // The rest wait, one per producer, and pass at the peer's rate: no faster, and another peer is not held up.
    const { limiter: other, checked: news } = checking(5, true)
    await other.offer(head('P', 1), 'honest')
    expect(news.length).toBe(1)
    await waitFor('a waiting forged head to get a credit', () => checked.length === 6, 2000, 10)
    expect(dropped).toEqual([])
    limiter.stop()
    other.stop()
  })

  test('a head gives its credit back only for the producer its signature proved, and only once', async () => {
    const limiter = new HeadLimiter({ rate: 2, accept: async () => undefined, onDropped: () => {} })
    const a = head('P', 1)
    const b = head('Q', 1)
    expect(limiter.admit(a, 'peer')).toBe(true)
    expect(limiter.admit(b, 'peer')).toBe(true)
    // a claimed P, but the head that verified was R's: no credit back
    limiter.useful(a, 'peer', 'R')
    expect(limiter.admit(head('S', 1), 'peer')).toBeInstanceOf(Promise)
    // b was Q's: its credit comes back once, however often it is reported
    limiter.useful(b, 'peer', 'Q')
    limiter.useful(b, 'peer', 'Q')
    expect(limiter.admit(head('T', 1), 'peer')).toBe(true)
    expect(limiter.admit(head('U', 1), 'peer')).toBeInstanceOf(Promise)
    limiter.stop()
  })

  test('after stop nothing is admitted, checked or held on a timer (gossip and the head exchange stop after the limiter)', async () => {
    const { limiter, checked } = checking(1, false)
    await limiter.offer(head('P', 1), 'peer')
    expect(checked.length).toBe(1)
    limiter.stop()
    expect(limiter.admit(head('Q', 1), 'peer')).toBe(false)
    expect(limiter.admit(head('Q', 1), 'other')).toBe(false)
    await limiter.offer(head('R', 1), 'other')
    expect(checked.length).toBe(1)
  })

  test('claimOf reads producer and seq from the bytes of a signed head, acks and blocks around them', async () => {
    const key = await generateKeyPair('Ed25519')
    const producer = peerIdFromPrivateKey(key).toString()
    const acks: Record<string, number> = { [producer]: 7 }
    for (let i = 0; i < 50; i++) acks[peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()] = i
    const signed = await signHead({ producer, seq: 7, root: 'bafyroot', hlc: '2026-11-29T20:00:00.000Z-0000', acks, pruned_plain: 0, compacted: 0 }, key)
    expect(claimOf(signed)).toEqual({ producer, seq: 7 })
    // a hint carrying its commit's blocks: they follow the head
    const block = new TextEncoder().encode('"producer":"X","seq":1')
    const cid = CID.createV1(raw.code, await sha256.digest(block))
    expect(claimOf(hintMessage(signed, [{ cid, bytes: block }]))).toEqual({ producer, seq: 7 })
    // a message the fast path cannot read is parsed whole
    const reordered = new TextEncoder().encode(JSON.stringify({ sig: 'x', head: { seq: 3, producer: 'P' } }))
    expect(claimOf(reordered)).toEqual({ producer: 'P', seq: 3 })
    expect(claimOf(new TextEncoder().encode('garbage'))).toBeUndefined()
    // every message is read for its claim before it takes a token: a large one the bytes do not give is not parsed
    const padded = new TextEncoder().encode(JSON.stringify({ sig: 'x'.repeat(CLAIM_PARSE_BYTES), head: { seq: 3, producer: 'P' } }))
    expect(claimOf(padded)).toBeUndefined()
  })

  test('news of many producers from one peer (producers minted without a members list) passes at most PEER_FACTOR times the rate', async () => {
    // every head is news: each minted producer's first head moves it forward
    const { limiter, checked } = checking(5, true)
    for (let i = 0; i < 50; i++) await limiter.offer(head(`minted${i}`, 1), 'minter')
    expect(checked.length).toBe(PEER_FACTOR * 5)
    // the rest wait, one per producer, and pass as the peer's total refills
    await waitFor('a waiting head of a minted producer', () => checked.length > PEER_FACTOR * 5, 2000, 10)
    limiter.stop()
  })

  test('large heads that prove no news take a credit per CREDIT_BYTES: their bytes are bounded too', async () => {
    const { limiter, checked } = checking(20, false)
    // over 256 KiB each (a hostile parse costs ~10 ms): 17 credits of the 20 a second
    const big = (producer: string): Uint8Array => new TextEncoder().encode(JSON.stringify({ head: { producer, seq: 1 }, pad: 'x'.repeat(256 * 1024) }))
    expect(Math.ceil(big('P').length / CREDIT_BYTES)).toBe(17)
    for (let i = 0; i < 10; i++) await limiter.offer(big(`P${i}`), 'attacker')
    expect(checked.length).toBe(1)
    // small heads of the same peer still pass, a credit each
    for (let i = 0; i < 3; i++) await limiter.offer(head(`Q${i}`, 1), 'attacker')
    expect(checked.length).toBe(4)
    limiter.stop()
  })
})
