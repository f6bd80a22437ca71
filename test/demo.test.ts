import { describe, expect, test } from 'bun:test'
import { cairn } from './helpers/process.ts'

describe('cairn demo', () => {
  test('runs three nodes, shows events arriving on each, prints the converged table, and exits 0', async () => {
    const started = Date.now()
    const r = await cairn(['demo', '--duration', '3s'])
    expect(r.code).toBe(0)
    expect(Date.now() - started).toBeLessThan(60_000)
    for (const [to, from] of [
      ['alpha', 'bravo'],
      ['bravo', 'alpha'],
      ['charlie', 'alpha']
    ]) {
      expect(r.stdout).toMatch(new RegExp(`${to} +← ${from}`))
    }
    expect(r.stdout).toContain('converged on all three nodes')
    expect(r.stdout).toMatch(/design +ann@example.com +member,read,write/)
  })
})
