import { describe, expect, test } from 'bun:test'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { Store } from '../../src/store/store.ts'
import { CLIP_TEXT, clip } from '../../src/util/clip.ts'
import { RejectionLog } from '../../src/node/rejections.ts'
import { CairnEventBus } from '../../src/node/events.ts'
import { Metrics } from '../../src/metrics/metrics.ts'
import { silentLog, type Log } from '../../src/log/logger.ts'

describe('texts a member chose, where they are stored or logged', () => {
  test('clip keeps short texts whole, cuts long ones saying how much went, and never halves a surrogate pair', () => {
    expect(clip('short')).toBe('short')
    const long = 'x'.repeat(CLIP_TEXT + 100)
    expect(clip(long)).toBe(`${'x'.repeat(CLIP_TEXT)}… (100 more characters)`)
    const pair = `${'x'.repeat(CLIP_TEXT - 1)}😀tail`
    expect(clip(pair)).toBe(`${'x'.repeat(CLIP_TEXT - 1)}… (6 more characters)`)
  })

  test("a producer's last error and a rejection's log line keep the start of a 1 MiB name", async () => {
    const db = await openDatabase(':memory:')
    migrate(db)
    const store = new Store(db)
    db.run('INSERT INTO producers (producer) VALUES (?)', ['p'])
    const name = 'n'.repeat(1024 * 1024)
    store.producers.setError('p', `refused: ${name} is not a day bucket`)
    const error = store.producers.get('p')?.last_error ?? ''
    expect(error.startsWith('refused: nnn')).toBe(true)
    expect(error.length).toBeLessThan(CLIP_TEXT + 40)
    store.producers.setError('p', null)
    expect(store.producers.get('p')?.last_error).toBeNull()

    const lines: string[] = []
    const log: Log = { ...silentLog, warn: (msg: string) => lines.push(msg) }
    const events = new CairnEventBus()
    const rejections = new RejectionLog({ isKnown: () => true }, { events, log, metrics: new Metrics() })
    events.safeDispatchEvent('peer:rejected', { detail: { reason: 'name_mismatch', detail: `${name} does not follow the naming`, peer: 'peer', producer: 'p' } })
    rejections.stop()
    expect(lines.length).toBe(1)
    expect(lines[0].length).toBeLessThan(CLIP_TEXT + 80)
  })
})
