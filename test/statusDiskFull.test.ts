import { describe, expect, test } from 'bun:test'
import { withApiNode } from './helpers/forge.ts'

/** SQLite's error on a full disk, as bun:sqlite throws it. */
function diskFullError(): Error {
  return Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL', errno: 13 })
}

describe('status on a full disk', () => {
  test('answers 200 with a degraded verdict saying that the last commit failed for lack of space, though the bus root cannot be stored', async () => {
    await withApiNode({}, async (node, base, token) => {
      await node.publish({ type: 'test.e', payload: { n: 1 } })
      // Every write of a block fails as on a full disk: the commit's, and the bus root's that status builds.
      const blocks = node.blocks
      blocks.putAll = () => {
        throw diskFullError()
      }
      blocks.putSync = () => {
        throw diskFullError()
      }
      const res = await fetch(`${base}/v1/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'test.e', payload: { n: 2 } })
      })
      expect({ status: res.status, code: ((await res.json()) as { error: { code: string } }).error.code }).toEqual({ status: 503, code: 'commit_failed' })
      const status = await fetch(`${base}/status`)
      expect(status.status).toBe(200)
      const doc = (await status.json()) as { verdict: string; reasons: string[]; bus_root: string }
      expect(doc.verdict).toBe('degraded')
      // The file system itself has room (the writes fail here by the test's hand, as a quota would refuse them):
      // status says the last commit failed, and how much is free now.
      const failed = doc.reasons.filter((r) => r.startsWith('the last commit, at '))
      expect(failed).toHaveLength(1)
      expect(failed[0]).toContain('failed with "database or disk is full"')
      expect(failed[0]).toContain('bytes free now: the next publish commits unless a quota still refuses this user')
      expect(doc.reasons.some((r) => r.startsWith('the bus root could not be stored (database or disk is full)'))).toBe(true)
      expect(doc.bus_root).toMatch(/^b/)
    })
  }, 60_000)
})
