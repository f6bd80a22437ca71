import { describe, expect, test } from 'bun:test'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { QUARANTINE_KEEP } from '../../src/store/quarantine.ts'
import { Store } from '../../src/store/store.ts'

describe('the quarantine table', () => {
  test("trim keeps a producer's newest entries and leaves other producers' alone", async () => {
    const db = await openDatabase(':memory:')
    migrate(db)
    const { quarantine } = new Store(db)
    const add = (producer: string, i: number): void => quarantine.add({ producer, path: `2026-11-29/10/bad-${i}`, cid: null, reason: 'name_mismatch', detail: `entry ${i}`, detected_at: i })
    for (let i = 0; i < 25; i++) add('p', i)
    for (let i = 0; i < 5; i++) add('q', i)
    expect(quarantine.trim('p', 30)).toBe(0)
    expect(quarantine.trim('p', 10)).toBe(15)
    const paths = (producer: string): string[] => db.all<{ path: string }>('SELECT path FROM quarantine WHERE producer = ? ORDER BY id', [producer]).map((r) => r.path)
    expect(paths('p')).toEqual(Array.from({ length: 10 }, (_, k) => `2026-11-29/10/bad-${15 + k}`))
    expect(paths('q').length).toBe(5)
    expect(quarantine.trim('p', 10)).toBe(0)
    expect(quarantine.trim('nobody')).toBe(0)
    expect(QUARANTINE_KEEP).toBeGreaterThan(0)
  })

  test("trim keeps a producer's newest entry of each reason, however many entries of another reason follow it", async () => {
    const db = await openDatabase(':memory:')
    migrate(db)
    const { quarantine } = new Store(db)
    // A member's forged membership change, then a flood of refused names meant to push it out.
    quarantine.add({ producer: 'm', path: '2026-11-29/09/000000000001-forged.json', cid: null, reason: 'not_owner', detail: 'm changed the membership but is not an owner', detected_at: 1 })
    quarantine.add({ producer: 'm', path: '2026-11-29/09/000000000002-squat.json', cid: null, reason: 'reserved_type', detail: 'm wrote cairn.junk', detected_at: 2 })
    quarantine.add({ producer: 'm', path: '2026-11-29/09/000000000003-squat.json', cid: null, reason: 'reserved_type', detail: 'm wrote cairn.junk', detected_at: 3 })
    for (let i = 0; i < 25; i++) quarantine.add({ producer: 'm', path: `2026-11-29/10/junk-${i}`, cid: null, reason: 'name_mismatch', detail: `junk ${i}`, detected_at: 10 + i })
    expect(quarantine.trim('m', 10)).toBe(16)
    const kept = db.all<{ path: string; reason: string }>('SELECT path, reason FROM quarantine WHERE producer = ? ORDER BY id', ['m'])
    expect(kept).toEqual([
      { path: '2026-11-29/09/000000000001-forged.json', reason: 'not_owner' },
      { path: '2026-11-29/09/000000000003-squat.json', reason: 'reserved_type' },
      ...Array.from({ length: 10 }, (_, k) => ({ path: `2026-11-29/10/junk-${15 + k}`, reason: 'name_mismatch' }))
    ])
    expect(quarantine.countsByReason()).toEqual({ not_owner: 1, reserved_type: 1, name_mismatch: 10 })
    expect(quarantine.trim('m', 10)).toBe(0)
  })

  test("an entry's path, detail and CID are kept within a bound, however long the name or CID a member chose", async () => {
    const db = await openDatabase(':memory:')
    migrate(db)
    const { quarantine } = new Store(db)
    // A name as long as a directory block allows (2 MiB), which the detail repeats, and a CID of a megabyte.
    const name = `${'x'.repeat(1024 * 1024 - 1)}\u{1F600}`
    quarantine.add({
      producer: 'm',
      path: `2026-11-29/10/${name}`,
      cid: `b${'a'.repeat(1024 * 1024)}`,
      reason: 'name_mismatch',
      detail: `${name} does not follow <seq, 12 digits>-<event_id>.json`,
      detected_at: 1
    })
    quarantine.add({
      producer: 'm',
      path: '2026-11-29/10/short',
      cid: 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku',
      reason: 'name_mismatch',
      detail: 'short does not follow <seq, 12 digits>-<event_id>.json',
      detected_at: 2
    })
    const rows = db.all<{ path: string; detail: string; cid: string | null }>('SELECT path, detail, cid FROM quarantine ORDER BY id')
    expect(rows.length).toBe(2)
    expect(rows[0].path.length).toBeLessThanOrEqual(1024)
    expect(rows[0].detail.length).toBeLessThanOrEqual(1024)
    expect(rows[0].path.startsWith('2026-11-29/10/xxx')).toBe(true)
    expect(rows[0].detail).toMatch(/… \(\d+ more characters\)$/)
    expect(rows[0].cid).toBeNull()
    expect(rows[1]).toEqual({ path: '2026-11-29/10/short', detail: 'short does not follow <seq, 12 digits>-<event_id>.json', cid: 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku' })
  })
})
