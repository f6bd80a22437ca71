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
})
