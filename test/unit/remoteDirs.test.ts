import { describe, expect, test } from 'bun:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { CID } from 'multiformats/cid'
import { directoryBlock } from '../../src/unixfs/tree.ts'
import { openDatabase, type SqlDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { openBlockDatabase, SqliteBlockstore } from '../../src/store/blockstore.ts'
import { Store } from '../../src/store/store.ts'
import { syncer as createSyncer, type Syncer } from '../../src/sync/syncer.ts'
import type { Outbox } from '../../src/publish/outbox.ts'
import { HybridClock } from '../../src/model/hlc.ts'
import { CairnEventBus, waitFor } from '../../src/node/events.ts'
import { Metrics } from '../../src/metrics/metrics.ts'
import { silentLog } from '../../src/log/logger.ts'
import { testOutbox } from '../helpers/outbox.ts'
import { forgetGoneDirs, type CheckedDays } from '../../src/housekeeping/remoteDirs.ts'

/** @returns `db` with the statements on `remote_dirs` recorded, each with its parameters */
function counting(db: SqlDatabase): { db: SqlDatabase; statements: Array<{ sql: string; params: unknown[] }> } {
  const statements: Array<{ sql: string; params: unknown[] }> = []
  const counted = new Proxy(db, {
    get: (target, key) => {
      const value = Reflect.get(target, key)
      if (key !== 'get' && key !== 'all' && key !== 'run') return typeof value === 'function' ? value.bind(target) : value
      return (sql: string, params?: unknown[]) => {
        if (sql.includes('remote_dirs')) statements.push({ sql, params: params ?? [] })
        return (value as (sql: string, params?: unknown[]) => unknown).call(target, sql, params)
      }
    }
  })
  return { db: counted, statements }
}

/**
 * @returns the statements by what they are: look-ups of days, of a day's hours, of a sharded bucket's
 * sub-shards (`HH#X`: whether a bucket of two files has one depends on where its names hash), and writes
 */
function kinds(statements: ReadonlyArray<{ sql: string; params: unknown[] }>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const { sql, params } of statements) {
    const paths = params.filter((p): p is string => typeof p === 'string' && /^\d{4}-\d{2}-\d{2}/.test(p))
    const kind = sql.startsWith('INSERT') ? 'write' : paths.some((p) => p.includes('#')) ? 'shard' : paths.every((p) => !p.includes('/')) ? 'days' : 'hours'
    out[kind] = (out[kind] ?? 0) + 1
  }
  return out
}

/** Day `i` after 2000-01-01 as yyyy-mm-dd. */
const dayName = (i: number): string => new Date(Date.UTC(2000, 0, 1 + i)).toISOString().slice(0, 10)

/**
 * Trees of other producers held in memory: `tree(days)` stores a root listing `days` (each with one hour,
 * `08`, of one empty directory) and @returns the root's CID as a string.
 */
async function trees(): Promise<{ read: (cid: CID) => Uint8Array | undefined; tree: (days: readonly string[]) => Promise<string> }> {
  const blocks = new Map<string, Uint8Array>()
  const put = (b: { cid: CID; bytes: Uint8Array }): void => {
    blocks.set(b.cid.toString(), b.bytes)
  }
  const empty = await directoryBlock([])
  const day = await directoryBlock([{ name: '08', cid: empty.cid, size: 4 }])
  put(empty)
  put(day)
  return {
    read: (cid) => blocks.get(cid.toString()),
    tree: async (days) => {
      const root = await directoryBlock(days.map((name) => ({ name, cid: day.cid, size: 10 })))
      put(root)
      return root.cid.toString()
    }
  }
}

/** Records, for `producer`, `root` as its synced root and the rows of a walk of `days` (a day, its hour, a shard). */
function walked(store: Store, db: SqlDatabase, producer: string, root: string, days: readonly string[]): void {
  db.run('INSERT INTO producers (producer, synced_root) VALUES (?, ?) ON CONFLICT (producer) DO UPDATE SET synced_root = excluded.synced_root', [producer, root])
  store.remoteDirs.putAll(
    producer,
    days.flatMap((d) => [[d, 'day'] as const, [`${d}/08`, 'hour'] as const, [`${d}/08#3`, 'shard'] as const])
  )
}

/**
 * A producer's outbox on a clock the test sets, after `perHour` events in each of the hours 08, 09 and 10 of
 * 2026-11-20, -21 and -22 (seqs in that order), and every head it committed.
 */
async function producerOverThreeDays(perHour: number): Promise<{ outbox: Outbox; blocks: SqliteBlockstore; heads: Uint8Array[]; setNow: (d: Date) => void }> {
  const key = await generateKeyPair('Ed25519')
  const pdb = await openDatabase(':memory:')
  migrate(pdb)
  const blocks = new SqliteBlockstore(await openBlockDatabase(':memory:'))
  const heads: Uint8Array[] = []
  const pevents = new CairnEventBus()
  pevents.addEventListener('outbox:committed', (e) => {
    heads.push(e.detail.head)
  })
  let now = new Date('2026-11-20T10:15:00Z')
  const outbox = testOutbox({ db: pdb, blocks, privateKey: key, maxBatch: 100, maxEventSize: 256 * 1024, maxDepth: 64, events: pevents, now: () => now })
  for (const day of ['20', '21', '22']) {
    for (const hour of ['08', '09', '10']) {
      now = new Date(`2026-11-${day}T${hour}:15:00Z`)
      for (let n = 1; n <= perHour; n++) await outbox.publish({ type: 'test.day', payload: { day, hour, n } })
    }
  }
  return {
    outbox,
    blocks,
    heads,
    setNow: (d) => {
      now = d
    }
  }
}

/** A consumer's syncer over `db`, fetching from the producer's `blocks`; `synced(head)` returns once it walked to it. */
function consumer(db: SqlDatabase, blocks: SqliteBlockstore): { store: Store; syncer: Syncer; synced: (head: Uint8Array) => Promise<void> } {
  const store = new Store(db)
  const events = new CairnEventBus()
  const syncer = createSyncer({
    getBlock: async (cid: CID) => blocks.getSync(cid) ?? (await Promise.reject(new Error(`missing ${cid.toString()}`))),
    limits: { maxEventSize: 256 * 1024, maxDepth: 64, maxFilesPerWalk: 10_000 },
    fetchTimeout: 5000
  })({ self: 'consumer', store, clock: new HybridClock(), log: silentLog, metrics: new Metrics(), events })
  syncer.start()
  const synced = async (head: Uint8Array): Promise<void> => {
    const idle = waitFor(events, 'sync:idle', { signal: AbortSignal.timeout(30_000) })
    await syncer.offerHead(head)
    await idle
  }
  return { store, syncer, synced }
}

describe('remote_dirs on a walk', () => {
  test('a walk looks up the days, and a changed day its hours, in one statement each, and records what it walked in one', async () => {
    // Three days of three hours each.
    const { outbox, blocks, heads } = await producerOverThreeDays(1)
    const raw = await openDatabase(':memory:')
    migrate(raw)
    const { db, statements } = counting(raw)
    const { syncer, synced: syncedTo } = consumer(db, blocks)
    const synced = async (): Promise<void> => await syncedTo(heads.at(-1)!)
    try {
      await synced()
      expect(raw.get<{ n: number }>('SELECT count(*) AS n FROM events')?.n).toBe(9)
      expect(raw.get<{ n: number }>('SELECT count(*) AS n FROM remote_dirs')?.n).toBe(12)
      // One more event in the last hour: the days looked up (1), that day's hours (1), the day and hour recorded
      // (1), and the changed bucket's sub-shard if its two names landed in one.
      await outbox.publish({ type: 'test.day', payload: { last: true } })
      const before = statements.length
      await synced()
      expect(raw.get<{ n: number }>('SELECT count(*) AS n FROM events')?.n).toBe(10)
      const { shard = 0, ...rest } = kinds(statements.slice(before))
      expect(rest).toEqual({ days: 1, hours: 1, write: 1 })
      expect(shard).toBeLessThanOrEqual(1)
    } finally {
      await syncer.stop()
    }
  })

  test('many and putAll take any number of paths, PER_STATEMENT at a time', async () => {
    const db = await openDatabase(':memory:')
    migrate(db)
    const { remoteDirs } = new Store(db)
    const paths = Array.from({ length: 70 }, (_, i) => `2026-11-20/${String(i).padStart(2, '0')}`)
    remoteDirs.putAll('p', [...paths.map((p) => [p, `old ${p}`] as const)])
    remoteDirs.putAll('p', [...paths.slice(0, 40).map((p) => [p, `new ${p}`] as const)])
    remoteDirs.putAll('q', [[paths[0], 'other producer']])
    const known = remoteDirs.many('p', [...paths, 'never walked'])
    expect(known.size).toBe(70)
    for (const [i, p] of paths.entries()) expect(known.get(p)).toBe(`${i < 40 ? 'new' : 'old'} ${p}`)
    expect(remoteDirs.many('p', []).size).toBe(0)
  })

  test('days, hours and their forgetting find the rows of one producer by the ranges of the primary key', async () => {
    const db = await openDatabase(':memory:')
    migrate(db)
    const { remoteDirs } = new Store(db)
    const rows = ['2026-11-20', '2026-11-20/08', '2026-11-20/08#A', '2026-11-20/08#A#3', '2026-11-20/09', '2026-11-20/23#F', '2026-11-21', '2026-11-21/00']
    remoteDirs.putAll('p', [...rows.map((r) => [r, `cid ${r}`] as const)])
    remoteDirs.putAll('q', [
      ['2026-11-19', 'q'],
      ['2026-11-20/08', 'q']
    ])
    expect(remoteDirs.days('p', 100)).toEqual(['2026-11-20', '2026-11-21'])
    expect(remoteDirs.days('p', 1)).toEqual(['2026-11-20'])
    expect(remoteDirs.days('q', 100)).toEqual(['2026-11-19', '2026-11-20'])
    expect(remoteDirs.days('none', 100)).toEqual([])
    expect(remoteDirs.days('p', 100, '2026-11-20')).toEqual(['2026-11-21'])
    expect(remoteDirs.days('p', 100, '2026-11-21')).toEqual([])
    const all = new Set(Array.from({ length: 24 }, (_, h) => String(h).padStart(2, '0')))
    expect(remoteDirs.forgetHoursBut('p', '2026-11-20', all)).toBe(0)
    const hours = (): string[] => db.all<{ path: string }>("SELECT path FROM remote_dirs WHERE producer = 'p' AND path LIKE '2026-11-20/%' ORDER BY path").map((r) => r.path)
    // 08 with its shards goes, 09 stays, and 23's shard goes though the hour itself has no row.
    expect(remoteDirs.forgetHoursBut('p', '2026-11-20', new Set(['09']))).toBe(4)
    expect(hours()).toEqual(['2026-11-20/09'])
    expect(remoteDirs.forgetDay('p', '2026-11-20')).toBe(2)
    const left = db.all<{ producer: string; path: string }>('SELECT producer, path FROM remote_dirs ORDER BY producer, path')
    expect(left).toEqual([
      { producer: 'p', path: '2026-11-21' },
      { producer: 'p', path: '2026-11-21/00' },
      { producer: 'q', path: '2026-11-19' },
      { producer: 'q', path: '2026-11-20/08' }
    ])
  })

  test('housekeeping forgets the recorded directories of the days and hours a producer pruned, and walks go on', async () => {
    // Three days of three hours each, two events an hour: seqs 1-6 on the 20th, 7-12 on the 21st, 13-18 on the 22nd.
    const { outbox, blocks: pblocks, heads, setNow } = await producerOverThreeDays(2)
    const raw = await openDatabase(':memory:')
    migrate(raw)
    const { db, statements } = counting(raw)
    const { store, syncer, synced } = consumer(db, pblocks)
    const paths = (): string[] => raw.all<{ path: string }>('SELECT path FROM remote_dirs ORDER BY path').map((r) => r.path)
    const read = (cid: CID): Uint8Array | undefined => pblocks.getSync(cid)
    const checked: CheckedDays = new Map()
    try {
      await synced(heads.at(-1)!)
      const walked = paths()
      expect(walked.filter((p) => p.startsWith('2026-11-20')).length).toBeGreaterThanOrEqual(4)
      // Nothing pruned yet: nothing to forget.
      expect(await forgetGoneDirs(store, read, checked)).toBe(0)
      expect(paths()).toEqual(walked)

      // The producer prunes its whole first day and the first hour of the second.
      const pruned = await outbox.prune([1, 2, 3, 4, 5, 6, 7, 8])
      expect(pruned.removed).toBe(8)
      await synced(pruned.head!)
      const deleted = await forgetGoneDirs(store, read, checked)
      const after = paths()
      expect(after.some((p) => p.startsWith('2026-11-20'))).toBe(false)
      expect(after.some((p) => p.startsWith('2026-11-21/08'))).toBe(false)
      expect(after).toEqual(walked.filter((p) => !p.startsWith('2026-11-20') && !p.startsWith('2026-11-21/08')))
      expect(deleted).toBe(walked.length - after.length)

      // A later run looks at the recorded days, and into none whose directory did not change.
      const before = statements.length
      expect(await forgetGoneDirs(store, read, checked)).toBe(0)
      const lookups = statements.slice(before).filter((st) => st.sql.startsWith('SELECT'))
      expect(lookups.length).toBe(3)

      // Walks go on: a new event arrives, and the directories it changed are recorded again.
      setNow(new Date('2026-11-22T10:45:00Z'))
      await outbox.publish({ type: 'test.day', payload: { last: true } })
      await synced(heads.at(-1)!)
      expect(raw.get<{ n: number }>("SELECT count(*) AS n FROM events WHERE type = 'test.day'")?.n).toBe(19)
      expect(await forgetGoneDirs(store, read, checked)).toBe(0)
    } finally {
      await syncer.stop()
    }
  })
  test('forgetting works in steps and lets the node go on between them; a stop ends it at the next pause', async () => {
    const db = await openDatabase(':memory:')
    migrate(db)
    const store = new Store(db)
    const { read, tree } = await trees()
    const days = [0, 1, 2].map(dayName)
    // Each of three producers pruned its first two days.
    for (const p of ['p1', 'p2', 'p3']) walked(store, db, p, await tree(days.slice(2)), days)
    let ranBetween: boolean | undefined
    let other = false
    setImmediate(() => {
      other = true
    })
    const deleted = await forgetGoneDirs(store, read, new Map(), {
      sliceMs: 0,
      restRatio: 0,
      stopping: () => {
        ranBetween ??= other
        return true
      }
    })
    // The task queued before ran at the first pause, and the stop came there: one producer's step only.
    expect(ranBetween).toBe(true)
    expect(deleted).toBe(6)
    expect(db.all<{ producer: string; n: number }>('SELECT producer, count(*) AS n FROM remote_dirs GROUP BY producer ORDER BY producer')).toEqual([
      { producer: 'p1', n: 3 },
      { producer: 'p2', n: 9 },
      { producer: 'p3', n: 9 }
    ])
  })

  test('each step compares the rows with the synced tree as it is then: a day a walk recorded meanwhile stays', async () => {
    const db = await openDatabase(':memory:')
    migrate(db)
    const store = new Store(db)
    const { read, tree } = await trees()
    const days = Array.from({ length: 40 }, (_, i) => dayName(i))
    // The producer pruned its first day; a walk of its next tree, with a new last day, ends during the run.
    walked(store, db, 'p', await tree(days.slice(1, 39)), days.slice(0, 39))
    const next = await tree(days.slice(1))
    let pauses = 0
    const deleted = await forgetGoneDirs(store, read, new Map(), {
      sliceMs: 0,
      restRatio: 0,
      stopping: () => {
        if (++pauses === 1) walked(store, db, 'p', next, days.slice(39))
        return false
      }
    })
    expect(pauses).toBeGreaterThan(1)
    expect(deleted).toBe(3)
    const left = db.all<{ path: string }>("SELECT path FROM remote_dirs WHERE path NOT LIKE '%/%' ORDER BY path").map((r) => r.path)
    expect(left).toEqual(days.slice(1))
  })

  test('a producer with thousands of recorded days has every gone one forgotten, the last included', async () => {
    const db = await openDatabase(':memory:')
    migrate(db)
    const store = new Store(db)
    const { read, tree } = await trees()
    // More days than the run looked at before (4,096), the last one pruned.
    const days = Array.from({ length: 4100 }, (_, i) => dayName(i))
    walked(store, db, 'p', await tree(days.slice(0, -1)), days)
    const checked: CheckedDays = new Map()
    expect(await forgetGoneDirs(store, read, checked)).toBe(3)
    expect(store.remoteDirs.days('p', 10_000)).toEqual(days.slice(0, -1))
    expect(checked.get('p')?.size).toBe(4099)
  })
  test('a changed day that keeps all its hours costs no statement on its hours; one that lost some, one per run of them', async () => {
    const raw = await openDatabase(':memory:')
    migrate(raw)
    const { db, statements } = counting(raw)
    const store = new Store(db)
    const empty = await directoryBlock([])
    const hourNames = Array.from({ length: 24 }, (_, h) => String(h).padStart(2, '0'))
    const full = await directoryBlock(hourNames.map((name) => ({ name, cid: empty.cid, size: 4 })))
    // Hours 03-05 and 20 pruned.
    const pruned = await directoryBlock(hourNames.filter((h) => !['03', '04', '05', '20'].includes(h)).map((name) => ({ name, cid: empty.cid, size: 4 })))
    const root = await directoryBlock([
      { name: '2026-11-20', cid: full.cid, size: 100 },
      { name: '2026-11-21', cid: pruned.cid, size: 100 }
    ])
    const blocks = new Map([empty, full, pruned, root].map((b) => [b.cid.toString(), b.bytes]))
    raw.run('INSERT INTO producers (producer, synced_root) VALUES (?, ?)', ['p', root.cid.toString()])
    for (const day of ['2026-11-20', '2026-11-21']) store.remoteDirs.putAll('p', [[day, 'old'], ...hourNames.flatMap((h) => [[`${day}/${h}`, 'h'] as const, [`${day}/${h}#1`, 's'] as const])])
    statements.length = 0
    expect(await forgetGoneDirs(store, (cid) => blocks.get(cid.toString()), new Map())).toBe(8)
    // the days (two and the end), then the second day's two runs of hours
    expect(statements.map((st) => st.sql.split(' ')[0])).toEqual(['SELECT', 'SELECT', 'SELECT', 'DELETE', 'DELETE'])
  })
})
