import { describe, expect, test } from 'bun:test'
import { MemoryTarget, processMemoryProbe } from '../../src/runtime/memoryTarget.ts'

const MiB = 1024 * 1024

describe('MemoryTarget', () => {
  test('collects only over the target, and at most once per interval however long it stays over', () => {
    let rss = 100 * MiB
    let now = 0
    let collected = 0
    const target = new MemoryTarget(
      150 * MiB,
      5000,
      {
        rss: () => rss,
        collect: () => {
          collected++
        }
      },
      () => now
    )
    expect(target.check()).toBeUndefined()
    rss = 400 * MiB
    // Over the target for a minute, checked every second: one collection per 5 s interval.
    const runs: number[] = []
    for (now = 0; now < 60_000; now += 1000) if (target.check() !== undefined) runs.push(now)
    expect(runs).toEqual([0, 5000, 10_000, 15_000, 20_000, 25_000, 30_000, 35_000, 40_000, 45_000, 50_000, 55_000])
    expect(collected).toBe(12)
    // Back under the target: no more collections, whatever the time.
    rss = 120 * MiB
    for (; now < 120_000; now += 1000) target.check()
    expect(collected).toBe(12)
  })

  test("the process's probe reads a resident set and collects", () => {
    const probe = processMemoryProbe()
    expect(probe).toBeDefined()
    expect(probe!.rss()).toBeGreaterThan(10 * MiB)
    probe!.collect()
  })
})
