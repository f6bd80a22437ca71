import { expect, test } from 'bun:test'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { cairn, NodeProcess, tempDir, waitFor } from '../helpers/process.ts'
import { query } from '../helpers/db.ts'

const PLUGINS = join(import.meta.dir, '..', 'console', 'plugins')

test('cairn replay (of one plugin) from another process is picked up by the running node and applied once', async () => {
  using tmp = tempDir()
  const a = await NodeProcess.init(tmp.path, 'a')
  await a.start(['--plugins', PLUGINS])
  try {
    const cure = join(tmp.path, 'cure')
    const { event_id } = await a.publish({ type: 'test.flaky', payload: { cure } })
    await waitFor('the flaky event dead-lettered', () => query(a.dir, 'SELECT 1 FROM dead_letters WHERE event_id = ?', [event_id]).length === 1, 60_000)
    const noPlugin = await cairn(['replay', '--dead', '--plugin', 'nope', '--data', a.dir])
    expect(noPlugin.code).not.toBe(0)
    expect(noPlugin.stderr).toContain('No plugin nope has run on this node')
    writeFileSync(cure, '')
    const r = await cairn(['replay', '--dead', '--plugin', 'flaky', '--data', a.dir])
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual({ queued: 1 })
    await waitFor('the replayed event applied', () => query<{ n: number }>(a.dir, 'SELECT n FROM flaky_applied WHERE event_id = ?', [event_id])[0]?.n === 1, 30_000)
    expect(query(a.dir, 'SELECT 1 FROM dead_letters WHERE event_id = ?', [event_id])).toEqual([])
  } finally {
    await a.stop()
  }
})
