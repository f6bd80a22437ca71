import { expect, test } from 'bun:test'
import { join } from 'node:path'
import { cairn, tempDir } from '../helpers/process.ts'

// Review: --since TIME is "an ISO timestamp or a duration", but Date.parse takes far more: '5' (a duration
// without its unit), '-5' and '-2024' are read as years (2001, 2024), so cairn replay --effects --type T
// --since 5 runs again every given-up effect of T since 2001. Since 41df6ae, `--since -5` reaches it too
// (parseArgs refused it as ambiguous before).
test('cairn replay --since refuses a number that is neither an ISO timestamp nor a duration', async () => {
  using tmp = tempDir()
  const dir = join(tmp.path, 'n')
  expect((await cairn(['init', '--data', dir, '--new-network'], { runtime: 'bun' })).code).toBe(0)
  for (const since of ['5', '-5', '-2024', '-.5', '12 ']) {
    const r = await cairn(['replay', '--data', dir, '--type', 'x.y', '--since', since], { runtime: 'bun' })
    expect({ since, code: r.code, stderr: r.stderr }).toEqual({
      since,
      code: 1,
      stderr: `cairn replay: Invalid --since ${since}: expected an ISO timestamp or a duration such as 24h\n`
    })
  }
  // What it takes still works.
  for (const since of ['24h', '2026-01-02', '2026-01-02T03:04:05Z', '2026-01-02T03:04:05.678+01:00', '2026-01-02 03:04:05']) {
    const r = await cairn(['replay', '--data', dir, '--type', 'x.y', '--since', since], { runtime: 'bun' })
    expect({ since, code: r.code, stdout: r.stdout }).toEqual({ since, code: 0, stdout: '{"queued":0}\n' })
  }
}, 120_000)
