import { describe, expect, test } from 'bun:test'
import { CommitQueue, type Pending } from '../../src/publish/queue.ts'

describe('the commit queue', () => {
  test('work run through serial waits for at most the commit under way, however fast requests keep arriving', async () => {
    const order: string[] = []
    let commits = 0
    let serialRan = false
    const queue: CommitQueue<number, number> = new CommitQueue<number, number>({
      maxBatch: 10,
      commit: async (batch: Array<Pending<number, number>>) => {
        commits++
        order.push(`commit ${commits}`)
        // A request arrives during every commit, until the serial work ran (a publisher at saturation).
        if (!serialRan && commits < 50) void queue.enqueue([commits])
        await new Promise((resolve) => setTimeout(resolve, 1))
        for (const p of batch) p.resolve(p.request)
      },
      failed: (batch, err) => {
        for (const p of batch) p.reject(err)
      }
    })
    const first = queue.enqueue([0])
    await new Promise((resolve) => setImmediate(resolve))
    await queue.serial(async () => {
      serialRan = true
      order.push('serial')
    })
    await first
    await queue.flush()
    expect(order.indexOf('serial')).toBeLessThanOrEqual(2)
    expect(commits).toBeLessThan(5)
  })

  test('commits every request in order, and a failed commit fails only its own requests', async () => {
    const committed: number[] = []
    const queue = new CommitQueue<number, number>({
      maxBatch: 3,
      commit: async (batch) => {
        if (batch.some((p) => p.request === 4)) throw new Error('refused')
        for (const p of batch) {
          committed.push(p.request)
          p.resolve(p.request * 10)
        }
      },
      failed: (batch, err) => {
        for (const p of batch) p.reject(err)
      }
    })
    const results = await Promise.allSettled([1, 2, 3, 4, 5, 6, 7].map(async (n) => await queue.enqueue([n])))
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value[0] : (r.reason as Error).message))).toEqual([10, 20, 30, 'refused', 'refused', 'refused', 70])
    expect(committed).toEqual([1, 2, 3, 7])
  })
})
