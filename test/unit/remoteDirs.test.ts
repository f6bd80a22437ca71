import { describe, expect, test } from 'bun:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { CID } from 'multiformats/cid'
import { openDatabase, type SqlDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { openBlockDatabase, SqliteBlockstore } from '../../src/store/blockstore.ts'
import { Store } from '../../src/store/store.ts'
import { syncer as createSyncer } from '../../src/sync/syncer.ts'
import { HybridClock } from '../../src/model/hlc.ts'
import { CairnEventBus, waitFor } from '../../src/node/events.ts'
import { Metrics } from '../../src/metrics/metrics.ts'
import { silentLog } from '../../src/log/logger.ts'
import { testOutbox } from '../helpers/outbox.ts'

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

describe('remote_dirs on a walk', () => {
  test('a walk looks up the days, and a changed day its hours, in one statement each, and records what it walked in one', async () => {
    const key = await generateKeyPair('Ed25519')
    const pdb = await openDatabase(':memory:')
    migrate(pdb)
    const pblocks = new SqliteBlockstore(await openBlockDatabase(':memory:'))
    const heads: Uint8Array[] = []
    const pevents = new CairnEventBus()
    pevents.addEventListener('outbox:committed', (e) => {
      heads.push(e.detail.head)
    })
    let now = new Date('2026-11-20T10:15:00Z')
    const outbox = testOutbox({ db: pdb, blocks: pblocks, privateKey: key, maxBatch: 100, maxEventSize: 256 * 1024, maxDepth: 64, events: pevents, now: () => now })
    // Three days of three hours each.
    for (const day of ['20', '21', '22']) {
      for (const hour of ['08', '09', '10']) {
        now = new Date(`2026-11-${day}T${hour}:15:00Z`)
        await outbox.publish({ type: 'test.day', payload: { day, hour } })
      }
    }
    const raw = await openDatabase(':memory:')
    migrate(raw)
    const { db, statements } = counting(raw)
    const events = new CairnEventBus()
    const syncer = createSyncer({
      getBlock: async (cid: CID) => pblocks.getSync(cid) ?? (await Promise.reject(new Error(`missing ${cid.toString()}`))),
      limits: { maxEventSize: 256 * 1024, maxDepth: 64, maxFilesPerWalk: 10_000 },
      fetchTimeout: 5000
    })({ self: 'consumer', store: new Store(db), clock: new HybridClock(), log: silentLog, metrics: new Metrics(), events })
    syncer.start()
    const synced = async (): Promise<void> => {
      const idle = waitFor(events, 'sync:idle', { signal: AbortSignal.timeout(30_000) })
      await syncer.offerHead(heads.at(-1)!)
      await idle
    }
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
})
