import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { RebuildShadow, RebuildSwap } from '../../src/store/rebuildShadow.ts'
import { Store } from '../../src/store/store.ts'
import { tempDir } from '../helpers/process.ts'

/** A small deterministic generator (mulberry32), so that a failing seed can be run again. */
function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const PRODUCERS = ['12D3KooWAaaa', '12D3KooWBbbb']
const KEYS = ['k1', 'k2', 'k3', 'k4']

interface Sides {
  marks: Map<string, number>
  keys: Set<string>
}

/** @returns a plugin's applied marks (producer/event_id → applied_at) and state keys (producer/seq/key/order_key) on one connection */
function read(store: Store, plugin: string, schema = 'main'): Sides {
  const marks = new Map<string, number>()
  for (const r of store.db.all<{ producer: string; event_id: string; applied_at: number }>(`SELECT producer, event_id, applied_at FROM ${schema}.plugin_applied WHERE plugin = ?`, [plugin]))
    marks.set(`${r.producer}/${r.event_id}`, r.applied_at)
  const keys = new Set<string>()
  for (const r of store.db.all<{ producer: string; seq: number; key: string; order_key: string }>(`SELECT producer, seq, key, order_key FROM ${schema}.state_keys WHERE plugin = ?`, [plugin]))
    keys.add(`${r.producer}/${r.seq}/${r.key}/${r.order_key}`)
  return { marks, keys }
}

const sorted = (xs: Iterable<string>): string[] => [...xs].sort()

describe('a rebuild takes the difference of the marks and keys in slices', () => {
  // What the swap did before it took the difference in slices, computed from both sides as they are at the swap:
  // marks both have keep cairn.db's time, marks only the shadow has come with its time, the others go; keys are
  // the shadow's, and cairn.db's of events no longer held stay.
  test.each([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])('seed %i: the swap leaves exactly what comparing both sides whole at the swap would', async (seed) => {
    const random = rng(seed)
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]
    using tmp = tempDir()
    const store = await Store.open(join(tmp.path, 'cairn.db'))
    {
      let shadow: RebuildShadow | undefined
      const side = new RebuildSwap(store.db)
      try {
        const events: Array<{ producer: string; seq: number; id: string }> = []
        let nextId = 0
        const addEvent = (producer: string, seq: number): { producer: string; seq: number; id: string } => {
          const id = `0190a000-0000-7000-8000-${String(++nextId).padStart(12, '0')}`
          store.events.insert({ event_id: id, type: 't', version: 1, producer, seq, hlc: `${1_800_000_000_000 + nextId}-0000`, occurred_at: new Date(0).toISOString(), payload: {} }, 'bafy', 0)
          const e = { producer, seq, id }
          events.push(e)
          return e
        }
        const seqs = new Map(PRODUCERS.map((p) => [p, 0]))
        const newEvent = (): { producer: string; seq: number; id: string } => {
          const producer = pick(PRODUCERS)
          const seq = (seqs.get(producer) ?? 0) + 1
          seqs.set(producer, seq)
          return addEvent(producer, seq)
        }
        for (let i = 0; i < 80; i++) newEvent()
        store.db.run("INSERT INTO plugin_cursors (plugin, cursor) VALUES ('p', 0), ('q', 0)")
        const mark = (db: Store, plugin: string, e: { producer: string; id: string }, at: number): void => {
          db.db.run('INSERT OR IGNORE INTO plugin_applied (plugin, producer, event_id, applied_at) VALUES (?, ?, ?, ?)', [plugin, e.producer, e.id, at])
        }
        const key = (db: Store, plugin: string, e: { producer: string; seq: number }, k: string): void => {
          db.db.run('INSERT OR IGNORE INTO state_keys (plugin, key, producer, seq, order_key) VALUES (?, ?, ?, ?, ?)', [plugin, k, e.producer, e.seq, `o${e.seq}`])
        }
        const applyTo = (db: Store, plugin: string, e: { producer: string; seq: number; id: string }, at: number): void => {
          mark(db, plugin, e, at)
          for (const k of KEYS) if (random() < 0.4) key(db, plugin, e, k)
        }
        // cairn.db: most events applied by p (and by q, which the swap must not touch)
        for (const e of events) {
          if (random() < 0.85) applyTo(store, 'p', e, 1)
          if (random() < 0.5) applyTo(store, 'q', e, 1)
        }
        // The shadow: mostly the same marks and keys, some missing, some new, some keys differing.
        shadow = RebuildShadow.create(store, 'p')
        const sh = shadow.store
        for (const e of events) {
          if (random() < 0.85) {
            mark(sh, 'p', e, 2)
            for (const k of KEYS) if (random() < 0.4) key(sh, 'p', e, k)
          }
        }
        for (const r of store.db.all<{ producer: string; seq: number; key: string }>("SELECT producer, seq, key FROM state_keys WHERE plugin = 'p'")) if (random() < 0.7) key(sh, 'p', r, r.key)

        side.watch('p')
        shadow.watch()
        const page = 1 + Math.floor(random() * 12)
        const shadowRef = shadow
        let rolledBack = false
        for (;;) {
          const done = sh.transaction(() => shadowRef.differ('p', 0, page))
          // Between pages, both sides go on: the node's rounds, housekeeping, the shadow's walk.
          const changes = Math.floor(random() * 4)
          for (let c = 0; c < changes; c++) {
            const r = random()
            if (r < 0.2)
              applyTo(store, 'p', pick(events), 3) // a retry that succeeds on the old tables
            else if (r < 0.3)
              applyTo(store, 'p', newEvent(), 3) // a new event the old tables apply
            else if (r < 0.4)
              applyTo(sh, 'p', pick(events), 4) // the shadow's retry, or its walk reaching a new event
            else if (r < 0.5) {
              // housekeeping forgets a superseded key
              const k = store.db.get<{ rowid: number }>("SELECT rowid FROM state_keys WHERE plugin = 'p' ORDER BY random() LIMIT 1")
              if (k != null) store.db.run('DELETE FROM state_keys WHERE rowid = ?', [k.rowid])
            } else if (r < 0.6) {
              // housekeeping prunes an event: its keys stay
              const e = pick(events)
              store.db.run('DELETE FROM events WHERE producer = ? AND seq = ?', [e.producer, e.seq])
            } else if (r < 0.7) applyTo(store, 'q', pick(events), 3)
            else if (r < 0.75 && !rolledBack) {
              // a swap that fails half-way (its transaction rolls back) leaves the watch as it was
              side.attach(shadowRef.path)
              try {
                store.transaction(() => {
                  side.copyState('p')
                  throw new Error('rolled back')
                })
              } catch (err) {
                expect((err as Error).message).toBe('rolled back')
              } finally {
                side.detach()
              }
              rolledBack = true
            }
          }
          if (done) break
        }

        const before = read(store, 'p')
        const after = read(sh, 'p')
        const q = read(store, 'q')
        const held = new Set(store.db.all<{ producer: string; seq: number }>('SELECT producer, seq FROM events').map((e) => `${e.producer}/${e.seq}`))
        const expectedMarks = new Map<string, number>()
        for (const [k, at] of after.marks) expectedMarks.set(k, before.marks.get(k) ?? at)
        const expectedKeys = new Set(after.keys)
        for (const k of before.keys) if (!held.has(k.split('/').slice(0, 2).join('/'))) expectedKeys.add(k)

        side.attach(shadow.path)
        try {
          store.transaction(() => side.copyState('p'))
        } finally {
          side.detach()
        }
        const swapped = read(store, 'p')
        expect(sorted([...swapped.marks].map(([k, at]) => `${k}@${at}`))).toEqual(sorted([...expectedMarks].map(([k, at]) => `${k}@${at}`)))
        expect(sorted(swapped.keys)).toEqual(sorted(expectedKeys))
        const qAfter = read(store, 'q')
        expect(sorted(qAfter.keys)).toEqual(sorted(q.keys))
        expect(qAfter.marks).toEqual(q.marks)
      } finally {
        side.unwatch('p')
        shadow?.remove()
        store.close()
      }
    }
  })

  test('a watch records the changes of the rebuilt plugin only, and its end drops what it recorded and its triggers', async () => {
    using tmp = tempDir()
    const store = await Store.open(join(tmp.path, 'cairn.db'))
    try {
      const side = new RebuildSwap(store.db)
      side.watch('p')
      store.db.run("INSERT INTO plugin_applied (plugin, producer, event_id, applied_at) VALUES ('p', 'a', 'e1', 1), ('q', 'a', 'e2', 1)")
      store.db.run("INSERT INTO state_keys (plugin, key, producer, seq, order_key) VALUES ('p', 'k', 'a', 1, 'o'), ('q', 'k', 'a', 2, 'o')")
      store.db.run("DELETE FROM state_keys WHERE plugin = 'q'")
      expect(store.db.all('SELECT plugin, producer, event_id FROM temp.cairn_rebuild_live_marks')).toEqual([{ plugin: 'p', producer: 'a', event_id: 'e1' }])
      expect(store.db.all('SELECT plugin, producer, seq FROM temp.cairn_rebuild_live_keys')).toEqual([{ plugin: 'p', producer: 'a', seq: 1 }])
      side.unwatch('p')
      expect(store.db.all('SELECT * FROM temp.cairn_rebuild_live_marks')).toEqual([])
      expect(store.db.all("SELECT name FROM temp.sqlite_master WHERE type = 'trigger'")).toEqual([])
      // the node's writes go on as before
      store.db.run("INSERT INTO plugin_applied (plugin, producer, event_id, applied_at) VALUES ('p', 'a', 'e3', 1)")
      expect(store.db.all('SELECT * FROM temp.cairn_rebuild_live_marks')).toEqual([])
    } finally {
      store.close()
    }
  })
})
