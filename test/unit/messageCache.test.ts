import { describe, expect, test } from 'bun:test'
import { BoundedMessageCache, messageIdToString } from '../../src/p2p/messageCache.ts'

const KiB = 1024
const id = (n: number): { msgId: Uint8Array; msgIdStr: string } => {
  const msgId = new Uint8Array([n >> 16, (n >> 8) & 255, n & 255])
  return { msgId, msgIdStr: messageIdToString(msgId) }
}
const message = (bytes: number, topic = 't'): { topic: string; data: Uint8Array } => ({ topic, data: new Uint8Array(bytes) })

describe('BoundedMessageCache', () => {
  test('keeps messages for the history heartbeats and gossips the validated ones of the first windows', () => {
    const cache = new BoundedMessageCache(3, 5, messageIdToString)
    expect(cache.put(id(1), message(10), true)).toBe(true)
    expect(cache.put(id(1), message(10), true)).toBe(false)
    cache.put(id(2), message(10), false)
    expect(cache.notValidatedCount).toBe(1)
    expect(
      cache
        .getGossipIDs(new Set(['t']))
        .get('t')
        ?.map(messageIdToString)
    ).toEqual([id(1).msgIdStr])
    expect(cache.validate(id(2).msgIdStr)?.message.data?.byteLength).toBe(10)
    expect(cache.notValidatedCount).toBe(0)
    expect(cache.getWithIWantCount(id(1).msgIdStr, 'p')?.count).toBe(1)
    expect(cache.getWithIWantCount(id(1).msgIdStr, 'p')?.count).toBe(2)
    expect(cache.get(id(1).msgId)?.topic).toBe('t')
    for (let i = 0; i < 3; i++) cache.shift()
    // Still cached (5 windows), no longer gossiped (3 windows).
    expect(cache.size).toBe(2)
    expect(cache.getGossipIDs(new Set(['t'])).size).toBe(0)
    cache.shift()
    cache.shift()
    expect(cache.size).toBe(0)
    expect(cache.bytes).toBe(0)
    // A removed message is gone at once and its bytes with it.
    cache.put(id(3), message(100), false)
    expect(cache.remove(id(3).msgIdStr)?.message.data?.byteLength).toBe(100)
    expect(cache.bytes).toBe(0)
    expect(cache.notValidatedCount).toBe(0)
  })

  test('holds its bytes and entries to the bounds by dropping the oldest messages, however many arrive', () => {
    const cache = new BoundedMessageCache(3, 5, messageIdToString, 1024 * KiB, 100)
    // 200 hints a second of 96 KiB for five heartbeats: ~94 MiB without the bound.
    let n = 0
    for (let beat = 0; beat < 5; beat++) {
      for (let i = 0; i < 200; i++) {
        cache.put(id(n++), message(96 * KiB), true)
        expect(cache.bytes).toBeLessThanOrEqual(1024 * KiB)
      }
      cache.shift()
    }
    cache.put(id(n++), message(96 * KiB), true)
    expect(cache.size).toBe(10)
    expect(cache.get(id(n - 1).msgId)).toBeDefined()
    expect(cache.get(id(n - 11).msgId)).toBeUndefined()
    expect(cache.evicted).toBe(n - 10)
    // Small messages: the entry bound holds.
    for (let i = 0; i < 1000; i++) cache.put(id(n++), message(1), true)
    expect(cache.size).toBe(100)
    expect(cache.history.reduce((a, w) => a + w.length, 0)).toBe(100)
    // One message over the whole bound is still kept (the newest always is) until the next arrives.
    cache.put(id(n++), message(2048 * KiB), true)
    expect(cache.size).toBe(1)
    cache.put(id(n++), message(1), true)
    expect(cache.size).toBe(1)
    expect(cache.bytes).toBeLessThan(1024 * KiB)
  })
})
