import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { cairn, NodeProcess, tempDir, waitFor } from './helpers/process.ts'

/** @returns the value of an unlabelled series in a node's /metrics */
async function series(node: NodeProcess, name: string): Promise<number> {
  const text = await (await fetch(`http://${node.http}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  if (line == null) throw new Error(`${name} is not in /metrics`)
  return Number(line.split(' ')[1])
}

describe('--memory-target', () => {
  test('a node over its memory target collects, once per --memory-target-interval; without the setting it never does', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    // Any running node is over 32 MiB of resident set.
    await a.start(['--memory-target', '32MiB', '--memory-target-interval', '1s'])
    await b.start(['--bootstrap', a.addrs[0]])
    const started = performance.now()
    const n = await waitFor('three collections on a', async () => {
      const c = await series(a, 'cairn_memory_target_collections_total')
      return c >= 3 && c
    })
    // At most one per second since the node started listening (plus the one at the start).
    expect(n).toBeLessThanOrEqual(Math.ceil((performance.now() - started) / 1000) + 2)
    expect(await series(a, 'cairn_memory_target_collect_seconds_total')).toBeGreaterThan(0)
    expect(await series(b, 'cairn_memory_target_collections_total')).toBe(0)
  })

  test('a memory target below 32MiB is refused with the reason', async () => {
    using tmp = tempDir()
    await cairn(['init', '--data', join(tmp.path, 'n'), '--new-network'])
    const r = await cairn(['run', '--data', join(tmp.path, 'n'), '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0', '--memory-target', '1MiB'])
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain('memory-target')
    expect(r.stderr).toContain('"1MiB" is too small: expected at least 32MiB')
  })
})
