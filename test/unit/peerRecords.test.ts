import { describe, expect, test } from 'bun:test'
import { MemoryDatastore } from 'datastore-core'
import { Key, type Datastore } from 'interface-datastore'
import { PeerRecordCache } from '../../src/p2p/peerRecords.ts'

/** A datastore that counts the writes that reach it, and can be made to fail them */
function disk(): { store: Datastore; puts: string[]; failing: { on: boolean } } {
  const store = new MemoryDatastore()
  const puts: string[] = []
  const failing = { on: false }
  const put = store.put.bind(store)
  store.put = async (key, val, options) => {
    if (failing.on) throw new Error('disk full')
    puts.push(key.toString())
    return await put(key, val, options)
  }
  return { store, puts, failing }
}

/** A datastore whose writes of `key` start (`started`) and then wait until `release` is called */
function slowDisk(key: string): { store: Datastore; started: Promise<void>; release: () => void } {
  const store = new MemoryDatastore()
  const started = Promise.withResolvers<void>()
  const gate = Promise.withResolvers<void>()
  const put = store.put.bind(store)
  store.put = async (k, val, options) => {
    if (k.toString() === key) {
      started.resolve()
      await gate.promise
    }
    return await put(k, val, options)
  }
  return { store, started: started.promise, release: gate.resolve }
}

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)
const text = (b: Uint8Array): string => new TextDecoder().decode(b)

describe('PeerRecordCache', () => {
  test('a peer record rewritten many times reaches the disk once, at the flush, with its last value', async () => {
    const d = disk()
    const cache = new PeerRecordCache(d.store, { flushMs: 60_000, maxEntries: 10, onError: () => {} })
    const key = new Key('/peers/abc')
    for (let i = 0; i < 100; i++) await cache.put(key, bytes(`v${i}`))
    expect(text(await cache.get(key))).toBe('v99')
    expect(d.puts).toEqual([])
    await cache.stop()
    expect(d.puts).toEqual(['/peers/abc'])
    expect(text(await d.store.get(key))).toBe('v99')
  })

  test('other keys are written at once', async () => {
    const d = disk()
    const cache = new PeerRecordCache(d.store, { flushMs: 60_000, maxEntries: 10, onError: () => {} })
    await cache.put(new Key('/pins/x'), bytes('p'))
    expect(d.puts).toEqual(['/pins/x'])
    await cache.stop()
  })

  test('a query sees records not yet flushed', async () => {
    const d = disk()
    const cache = new PeerRecordCache(d.store, { flushMs: 60_000, maxEntries: 10, onError: () => {} })
    await cache.put(new Key('/peers/a'), bytes('1'))
    await cache.put(new Key('/peers/b'), bytes('2'))
    const found: string[] = []
    for await (const { key } of cache.query({ prefix: '/peers' })) found.push(key.toString())
    expect(found.sort()).toEqual(['/peers/a', '/peers/b'])
    await cache.stop()
  })

  test('memory holds at most maxEntries records; a changed record pushed out is written, not lost', async () => {
    const d = disk()
    const cache = new PeerRecordCache(d.store, { flushMs: 60_000, maxEntries: 3, onError: () => {} })
    for (let i = 0; i < 50; i++) await cache.put(new Key(`/peers/p${i}`), bytes(`r${i}`))
    expect(cache.size).toBe(3)
    await cache.stop()
    for (let i = 0; i < 50; i++) expect(text(await d.store.get(new Key(`/peers/p${i}`)))).toBe(`r${i}`)
  })

  test('a failed write is reported and tried again at the next flush', async () => {
    const d = disk()
    const errors: string[] = []
    const cache = new PeerRecordCache(d.store, { flushMs: 60_000, maxEntries: 10, onError: (e) => errors.push(e.message) })
    await cache.put(new Key('/peers/a'), bytes('1'))
    d.failing.on = true
    await cache.flush()
    expect(errors).toEqual(['disk full'])
    d.failing.on = false
    await cache.stop()
    expect(text(await d.store.get(new Key('/peers/a')))).toBe('1')
  })

  test('a deleted record is neither served nor written back', async () => {
    const d = disk()
    const cache = new PeerRecordCache(d.store, { flushMs: 60_000, maxEntries: 10, onError: () => {} })
    const key = new Key('/peers/a')
    await cache.put(key, bytes('1'))
    await cache.delete(key)
    expect(await cache.has(key)).toBe(false)
    await cache.stop()
    expect(d.puts).toEqual([])
  })

  test('a delete while the record is being written leaves it deleted on disk', async () => {
    const d = slowDisk('/peers/a')
    const cache = new PeerRecordCache(d.store, { flushMs: 60_000, maxEntries: 10, onError: () => {} })
    const key = new Key('/peers/a')
    await cache.put(key, bytes('1'))
    const flushed = cache.flush()
    await d.started
    const deleted = cache.delete(key)
    d.release()
    await Promise.all([flushed, deleted])
    expect(await d.store.has(key)).toBe(false)
    expect(await cache.has(key)).toBe(false)
    await cache.stop()
  })

  test('stop waits for the write of a changed record pushed out of memory', async () => {
    const d = slowDisk('/peers/a')
    const cache = new PeerRecordCache(d.store, { flushMs: 60_000, maxEntries: 1, onError: () => {} })
    await cache.put(new Key('/peers/a'), bytes('1'))
    await cache.put(new Key('/peers/b'), bytes('2'))
    await d.started
    // Whether the pushed-out record is on disk at the moment stop resolves.
    const stopped = cache.stop().then(async () => await d.store.has(new Key('/peers/a')))
    // One turn of the event loop, so that a stop that does not wait for the write resolves before it ends.
    await new Promise((resolve) => setImmediate(resolve))
    d.release()
    expect(await stopped).toBe(true)
    expect(text(await d.store.get(new Key('/peers/a')))).toBe('1')
    expect(text(await d.store.get(new Key('/peers/b')))).toBe('2')
  })

  test('a record libp2p changes after the store stopped is kept in memory only: no timer holds the process, nothing is written into a data directory removed meanwhile', async () => {
    const d = disk()
    const cache = new PeerRecordCache(d.store, { flushMs: 60_000, maxEntries: 1, onError: () => {} })
    await cache.put(new Key('/peers/a'), bytes('a1'))
    await cache.stop()
    expect(d.puts).toEqual(['/peers/a'])
    await cache.put(new Key('/peers/b'), bytes('b1'))
    // evicting a changed record past maxEntries, and a flush (a query asks for one), would write it
    await cache.put(new Key('/peers/c'), bytes('c1'))
    await cache.flush()
    expect(d.puts).toEqual(['/peers/a'])
    expect(text(await cache.get(new Key('/peers/c')))).toBe('c1')
    // started again (Helia restarted), it writes as before, what changed while it was stopped included
    cache.start()
    await cache.put(new Key('/peers/d'), bytes('d1'))
    await cache.stop()
    expect(d.puts).toEqual(['/peers/a', '/peers/c', '/peers/d'])
  })
})
