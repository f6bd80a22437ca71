import { describe, expect, test } from 'bun:test'
import { RUN_SETTINGS, SETTINGS } from '../../src/config/catalog.ts'
import { resolveSettings } from '../../src/config/resolve.ts'

/** @returns the one setting resolved from a flag, config.json or the environment, or the error's message */
function resolve(name: string, from: { flag?: unknown; file?: unknown; env?: string }): unknown {
  const setting = RUN_SETTINGS.find((s) => s.name === name)!
  const env = from.env == null ? {} : { [`CAIRN_${name.toUpperCase().replaceAll('-', '_')}`]: from.env }
  try {
    return resolveSettings([setting], from.flag == null ? {} : { [name]: from.flag }, env, from.file == null ? {} : { [name]: from.file })[name]
  } catch (err) {
    return (err as Error).message
  }
}

/**
 * Each numeric, size and duration setting of `run`: the lowest value it takes and the highest (undefined when
 * it has none), each next to the first value it refuses on that side.
 */
const BOUNDS: Record<string, { min: [string, string]; max?: [string, string] }> = {
  'announce-interval': { min: ['100ms', '99ms'], max: ['24d', '25d'] },
  'fetch-timeout': { min: ['100ms', '99ms'], max: ['6d', '7d'] },
  'max-event-size': { min: ['1KiB', '1023'], max: ['3MiB', '3145729'] },
  'max-body-size': { min: ['1000', '999'] },
  'max-depth': { min: ['2', '1'] },
  'max-files-per-walk': { min: ['1', '0'] },
  'heads-per-second': { min: ['1', '0'] },
  'hints-per-second': { min: ['1', '0'] },
  'max-producers': { min: ['2', '1'] },
  'lag-alert': { min: ['0ms', '-1ms'] },
  retention: { min: ['0s', '-1s'] },
  'retention-max': { min: ['1s', '999ms'] },
  'housekeeping-interval': { min: ['1s', '999ms'], max: ['24d', '25d'] },
  'memory-target': { min: ['32MiB', '33554431'] },
  'memory-target-interval': { min: ['1s', '999ms'] },
  'events-retention': { min: ['0s', '-1s'] },
  'snapshot-interval': { min: ['1s', '999ms'], max: ['24d', '25d'] },
  'max-batch': { min: ['1', '0'] },
  'http-idle-timeout': { min: ['1s', '999ms'], max: ['255s', '256s'] },
  'stream-heartbeat': { min: ['100ms', '99ms'], max: ['1h', '61m'] },
  'http-max-connections': { min: ['1', '0'] },
  'max-clock-skew': { min: ['1s', '999ms'] },
  'publish-fence': { min: ['0s', '-1s'], max: ['20s', '21s'] }
}

describe('numeric, size and duration settings', () => {
  test('each one of run has bounds (a new one must be given its own here)', () => {
    const numeric = RUN_SETTINGS.filter((s) => s.value === 'N' || s.value === 'SIZE' || s.value === 'DURATION').map((s) => s.name)
    expect(numeric.toSorted()).toEqual(Object.keys(BOUNDS).toSorted())
  })

  for (const [name, { min, max }] of Object.entries(BOUNDS)) {
    test(`${name} takes ${min[0]}${max == null ? ' and more' : ` to ${max[0]}`}, and refuses ${min[1]}${max == null ? '' : ` and ${max[1]}`} naming the setting and the value`, () => {
      expect(typeof resolve(name, { flag: min[0] })).toBe('number')
      expect(resolve(name, { flag: min[1] })).toStartWith(`Invalid setting ${name} (from --${name}): "${min[1]}" is `)
      if (max != null) {
        expect(typeof resolve(name, { flag: max[0] })).toBe('number')
        expect(resolve(name, { flag: max[1] })).toStartWith(`Invalid setting ${name} (from --${name}): "${max[1]}" is `)
      }
    })
  }

  test('a timer setting cannot be longer than a timer waits (2^31-1 ms): a longer one would fire at once, in a loop', () => {
    for (const name of ['announce-interval', 'housekeeping-interval', 'snapshot-interval', 'stream-heartbeat', 'http-idle-timeout']) {
      expect(resolve(name, { flag: '25d' })).toContain('is too long')
    }
    // a batch of blocks waits four times fetch-timeout
    expect((resolve('fetch-timeout', { flag: '6d' }) as number) * 4).toBeLessThan(2 ** 31)
  })

  test('heads-per-second 0, a negative or a fraction is refused: at 0 the node never takes a head', () => {
    expect([resolve('heads-per-second', { flag: '0' }), resolve('heads-per-second', { flag: '-5' }), resolve('heads-per-second', { flag: '2.5' })]).toEqual([
      'Invalid setting heads-per-second (from --heads-per-second): "0" is too small: expected a whole number of at least 1',
      'Invalid setting heads-per-second (from --heads-per-second): "-5" is too small: expected a whole number of at least 1',
      'Invalid setting heads-per-second (from --heads-per-second): "2.5" is not a whole number: expected a whole number of at least 1'
    ])
  })

  test('max-batch 0 is refused: at 0 every publish of an array is refused and an event stream never ends', () => {
    expect(resolve('max-batch', { flag: '0' })).toBe('Invalid setting max-batch (from --max-batch): "0" is too small: expected a whole number of at least 1')
    expect(resolve('max-batch', { file: 0 })).toBe('Invalid setting max-batch (from "max-batch" in config.json): 0 is too small: expected a whole number of at least 1')
  })

  test('a value that is not a duration, whole number or size names the setting, the value and the expected form', () => {
    const duration = 'is not a duration: expected a number and a unit, such as 30s, 15m, 24h, 7d'
    expect([
      resolve('retention', { flag: 'banana' }),
      resolve('retention', { flag: '5' }),
      resolve('retention', { flag: '0' }),
      resolve('retention', { env: '2' }),
      resolve('max-batch', { flag: '1.5' }),
      resolve('memory-target', { flag: 'lots' })
    ]).toEqual([
      `Invalid setting retention (from --retention): "banana" ${duration}`,
      `Invalid setting retention (from --retention): "5" ${duration}`,
      `Invalid setting retention (from --retention): "0" ${duration}`,
      `Invalid setting retention (from CAIRN_RETENTION): "2" ${duration}`,
      'Invalid setting max-batch (from --max-batch): "1.5" is not a whole number: expected a whole number of at least 1',
      'Invalid setting memory-target (from --memory-target): "lots" is not a size: expected a number of bytes with an optional unit, such as 262144, 256KiB or 1MiB'
    ])
  })

  test('a bare number of a duration in config.json is refused as it is as a flag (it was taken as milliseconds)', () => {
    expect(resolve('retention', { file: 48 })).toBe('Invalid setting retention (from "retention" in config.json): 48 is not a duration: expected a number and a unit, such as 30s, 15m, 24h, 7d')
    expect(resolve('retention', { file: '48h' })).toBe(48 * 3_600_000)
  })

  test('a JSON number in config.json is a whole number or a number of bytes, as its text is as a flag', () => {
    expect([resolve('max-batch', { file: 10 }), resolve('max-body-size', { file: 2000 }), resolve('max-body-size', { flag: '2000' })]).toEqual([10, 2000, 2000])
    expect(resolve('max-batch', { file: 1.5 })).toBe('Invalid setting max-batch (from "max-batch" in config.json): 1.5 is not a whole number: expected a whole number of at least 1')
  })

  test('retention over retention-max, both set, is refused naming both values and where each came from (past retention-max a file goes unacknowledged); a default follows the other', () => {
    const both = (flags: Record<string, unknown>, env: Record<string, string> = {}, file: Record<string, unknown> = {}): unknown => {
      try {
        return resolveSettings(RUN_SETTINGS, { data: '/tmp/x', ...flags }, env, file).retention
      } catch (err) {
        return (err as Error).message
      }
    }
    const why = 'retention-max prunes own event files that old even when a member has not acknowledged them, so a longer retention would never wait for acknowledgements'
    expect([both({ retention: '2h', 'retention-max': '1h' }), both({}, { CAIRN_RETENTION_MAX: '1d' }, { retention: '36h' })]).toEqual([
      `Invalid setting retention (from --retention): "2h" is more than retention-max ("1h", from --retention-max): ${why}; lower retention or raise retention-max to at least "2h"`,
      `Invalid setting retention (from "retention" in config.json): "36h" is more than retention-max ("1d", from CAIRN_RETENTION_MAX): ${why}; lower retention or raise retention-max to at least "36h"`
    ])
    // Equal is fine, and so is the default pair.
    expect([both({ retention: '1h', 'retention-max': '1h' }), both({})]).toEqual([3_600_000, 48 * 3_600_000])
    // A default gives way to the other value set: retention-max's 7d rises to a retention of 10d, retention's 48h
    // falls to a retention-max of 1d.
    const pair = (flags: Record<string, unknown>): unknown[] => {
      const all = resolveSettings(RUN_SETTINGS, { data: '/tmp/x', ...flags }, {}, {})
      return [all.retention, all['retention-max']]
    }
    expect([pair({ retention: '10d' }), pair({ 'retention-max': '1d' })]).toEqual([
      [10 * 86_400_000, 10 * 86_400_000],
      [86_400_000, 86_400_000]
    ])
  })

  test('every default is within its bounds', () => {
    const all = resolveSettings(RUN_SETTINGS, { data: '/tmp/x' }, {}, {})
    expect(all['heads-per-second']).toBe(SETTINGS['heads-per-second'].default)
    expect(all['max-batch']).toBe(SETTINGS['max-batch'].default)
  })
})
