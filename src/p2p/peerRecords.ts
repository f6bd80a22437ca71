import { BaseDatastore } from 'datastore-core'
import { Key, type Datastore, type KeyQuery, type Pair, type Query } from 'interface-datastore'
import type { AbortOptions } from '@libp2p/interface'

/** Where libp2p's peer store keeps its records. */
const PEERS_PREFIX = '/peers/'

export interface PeerRecordCacheInit {
  /** how long a changed record may wait in memory before it is written */
  flushMs: number
  /** the most records kept in memory; the oldest is written (when changed) and dropped beyond it */
  maxEntries: number
  /** told of a write that failed (the record stays changed and is tried again) */
  onError: (err: Error) => void
}

/**
 * libp2p's datastore with its peer records in memory, written to disk at most every `flushMs`.
 *
 * libp2p merges the remote peer's record on every incoming stream (bitswap opens one per message, the
 * head exchange one per push) and always rewrites it, if only to stamp `updated`: on a busy node that was
 * a file read and a file write per stream. A record lost in a crash is harmless: it holds a peer's
 * addresses and protocols, which the next connection learns again. Every other key, and every query,
 * goes to disk as written (a query first writes the changed records, so it sees them).
 */
export class PeerRecordCache extends BaseDatastore {
  private readonly disk: Datastore
  private readonly init: PeerRecordCacheInit
  /** key → the record's bytes, oldest first; a key in `changed` is not yet on disk */
  private readonly records = new Map<string, Uint8Array>()
  private readonly changed = new Set<string>()
  private timer: ReturnType<typeof setTimeout> | undefined
  /** once stopped, changed records stay in memory: libp2p still updates some while it stops, after this store did */
  private stopped = false
  /** every disk write and delete of a peer record, one after the other, in the order they were asked for */
  private disking: Promise<void> = Promise.resolve()

  constructor(disk: Datastore, init: PeerRecordCacheInit) {
    super()
    this.disk = disk
    this.init = init
  }

  override async put(key: Key, val: Uint8Array, options?: AbortOptions): Promise<Key> {
    const k = key.toString()
    if (!k.startsWith(PEERS_PREFIX)) return await this.disk.put(key, val, options)
    this.remember(k, val)
    this.markChanged(k)
    return key
  }

  override async get(key: Key, options?: AbortOptions): Promise<Uint8Array> {
    const k = key.toString()
    const cached = this.records.get(k)
    if (cached != null) return cached
    const bytes = await this.disk.get(key, options)
    if (k.startsWith(PEERS_PREFIX) && !this.records.has(k)) this.remember(k, bytes)
    return bytes
  }

  override async has(key: Key, options?: AbortOptions): Promise<boolean> {
    return this.records.has(key.toString()) || (await this.disk.has(key, options))
  }

  override async delete(key: Key, options?: AbortOptions): Promise<void> {
    const k = key.toString()
    if (!k.startsWith(PEERS_PREFIX)) return await this.disk.delete(key, options)
    this.records.delete(k)
    this.changed.delete(k)
    // After any write of the record already under way, so that the write cannot land after the delete.
    await this.serial(async () => {
      await this.disk.delete(key, options)
    })
  }

  override async *query(q: Query, options?: AbortOptions): AsyncGenerator<Pair> {
    await this.flush()
    yield* this.disk.query(q, options)
  }

  override async *queryKeys(q: KeyQuery, options?: AbortOptions): AsyncGenerator<Key> {
    await this.flush()
    yield* this.disk.queryKeys(q, options)
  }

  /** Writes every changed record to disk (none once stopped); a write that fails stays changed for the next flush. */
  async flush(): Promise<void> {
    if (this.stopped) return
    await this.serial(async () => {
      const keys = [...this.changed]
      this.changed.clear()
      for (const k of keys) {
        const bytes = this.records.get(k)
        if (bytes == null) continue
        await this.write(k, bytes)
      }
    })
  }

  start(): void {
    this.stopped = false
  }

  /**
   * Writes the changed records and stops the timer (Helia stops its datastore when it stops). A record changed
   * after it is not written (no timer keeps the process up, nothing lands in a data directory removed meanwhile):
   * it holds what the next connection learns again.
   */
  async stop(): Promise<void> {
    if (this.timer != null) clearTimeout(this.timer)
    this.timer = undefined
    await this.flush()
    this.stopped = true
  }

  /** @returns how many records are held in memory */
  get size(): number {
    return this.records.size
  }

  private markChanged(k: string): void {
    this.changed.add(k)
    if (this.stopped) return
    this.timer ??= setTimeout(() => {
      this.timer = undefined
      void this.flush()
    }, this.init.flushMs)
  }

  private remember(k: string, bytes: Uint8Array): void {
    this.records.delete(k)
    this.records.set(k, bytes)
    while (this.records.size > this.init.maxEntries) {
      const [oldest, old] = this.records.entries().next().value!
      this.records.delete(oldest)
      if (this.changed.delete(oldest) && !this.stopped) void this.serial(async () => await this.write(oldest, old))
    }
  }

  /** Runs `fn` after every disk operation asked for before it; its failure does not stop the ones after. */
  private async serial(fn: () => Promise<void>): Promise<void> {
    const run = this.disking.then(fn)
    this.disking = run.catch(() => {})
    await run
  }

  private async write(k: string, bytes: Uint8Array): Promise<void> {
    try {
      await this.disk.put(new Key(k), bytes)
    } catch (err) {
      this.init.onError(err as Error)
      // Tried again at the next flush, unless a newer record or a delete came meanwhile.
      if (this.records.get(k) === bytes) this.markChanged(k)
    }
  }
}
