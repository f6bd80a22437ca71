import { describe, expect, test } from 'bun:test'
import { addCount } from '../helpers/events.ts'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { Store } from '../../src/store/store.ts'
import { pluginHost } from '../../src/plugins/host.ts'
import { silentLog } from '../../src/log/logger.ts'
import { Metrics } from '../../src/metrics/metrics.ts'
import { CairnEventBus } from '../../src/node/events.ts'
import { definePlugin, v } from '../../src/plugins/mod.ts'

describe('an apply whose statement makes SQLite roll back the whole transaction (ON CONFLICT ROLLBACK, RAISE(ROLLBACK))', () => {
  test('costs only its own event: the events applied before it in the round are kept, every other event is applied once', async () => {
    const db = await openDatabase(':memory:')
    migrate(db)
    const store = new Store(db)
    const plugin = definePlugin({
      name: 'strict',
      handles: { 'test.count': { version: 1, payload: v.object({ n: v.number() }) } },
      migrations: ['CREATE TABLE strict_rows (n INTEGER PRIMARY KEY ON CONFLICT ROLLBACK, applied INTEGER NOT NULL)'],
      apply(event, { db }) {
        db.run('INSERT INTO strict_rows (n, applied) VALUES (?, 1)', [(event.payload as { n: number }).n])
      }
    })
    // The fourth event repeats n = 2: its insert rolls back whatever transaction it runs in.
    for (const n of [1, 2, 3, 2, 5]) addCount(db, n)
    const host = pluginHost({ plugins: [{ plugin, source: 'test' }], backoffMs: 5, maxAttempts: 3 })({ store, log: silentLog, metrics: new Metrics(), events: new CairnEventBus() })
    await host.start()
    await host.drain()
    await host.stop()
    expect(db.all('SELECT n, applied FROM strict_rows ORDER BY n')).toEqual([
      { n: 1, applied: 1 },
      { n: 2, applied: 1 },
      { n: 3, applied: 1 },
      { n: 5, applied: 1 }
    ])
    expect(db.get('SELECT count(*) AS n FROM plugin_applied')).toEqual({ n: 4 })
    expect(store.pluginState.deadLetters().map((d) => d.attempts)).toEqual([3])
    expect(store.events.lowestPendingCursor()).toBeUndefined()
  }, 30_000)
})

describe('a round over a long backlog', () => {
  test("leaves cairn.db's write lock to another process (cairn replay, cairn plugins rebuild) within its busy timeout", async () => {
    const { mkdtempSync, rmSync, writeFileSync } = await import('node:fs')
    const { tmpdir } = await import('node:os')
    const { join, resolve } = await import('node:path')
    const dir = mkdtempSync(join(tmpdir(), 'cairn-round-lock-'))
    const path = join(dir, 'cairn.db')
    const started = join(dir, 'started')
    const db = await openDatabase(path)
    migrate(db)
    // 6,000 events that take a millisecond each stand in for a catch-up of a large backlog: about 6 s of applying.
    db.transaction(() => {
      for (let i = 0; i < 6000; i++) addCount(db, i)
    })
    const root = resolve(import.meta.dir, '../..')
    // The other process waits for the first apply, then writes with a 2 s busy timeout (the CLI's is 5 s).
    const other = Bun.spawn(
      [
        process.execPath,
        '-e',
        `const { existsSync } = require('node:fs')
         const { openDatabase } = await import(${JSON.stringify(`${root}/src/runtime/sqlite.ts`)})
         const { Store } = await import(${JSON.stringify(`${root}/src/store/store.ts`)})
         while (!existsSync(${JSON.stringify(started)})) await Bun.sleep(5)
         const db = await openDatabase(${JSON.stringify(path)})
         db.exec('PRAGMA busy_timeout = 2000')
         try { new Store(db).meta.put('probe', 'written'); console.log('written') } catch (err) { console.log(err.message) }
         db.close()`
      ],
      { stdout: 'pipe', stderr: 'inherit' }
    )
    let first = true
    const plugin = definePlugin({
      name: 'slow',
      handles: { 'test.count': { version: 1, payload: v.object({ n: v.number() }) } },
      apply() {
        if (first) {
          first = false
          writeFileSync(started, '')
        }
        const until = performance.now() + 1
        while (performance.now() < until);
      }
    })
    const store = new Store(db)
    const host = pluginHost({ plugins: [{ plugin, source: 'test' }] })({ store, log: silentLog, metrics: new Metrics(), events: new CairnEventBus() })
    try {
      await host.start()
      await host.drain()
      const said = (await new Response(other.stdout).text()).trim()
      expect(said).toBe('written')
      expect(store.pluginState.unappliedCount('slow')).toBe(0)
      expect(db.get('SELECT count(*) AS n FROM plugin_applied')).toEqual({ n: 6000 })
    } finally {
      other.kill()
      await host.stop()
      db.close()
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)
})
