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

test('a plugin removed from --plugins: status names its dead letters as not loaded, replay and rebuild of it are refused, and replay of every dead letter leaves it out', async () => {
  using tmp = tempDir()
  const a = await NodeProcess.init(tmp.path, 'a')
  await a.start(['--plugins', PLUGINS])
  try {
    const { event_id } = await a.publish({ type: 'test.flaky', payload: { cure: join(tmp.path, 'never') } })
    await waitFor('the flaky event dead-lettered', () => query(a.dir, 'SELECT 1 FROM dead_letters WHERE event_id = ?', [event_id]).length === 1, 60_000)
    await a.stop()
    await a.start()

    const status = await cairn(['status', '--json', '--data', a.dir])
    const reasons: string[] = JSON.parse(status.stdout).reasons
    expect(reasons).toContain(
      '1 dead letter(s) of plugin flaky, which this node has not loaded: nothing can replay them until it runs with flaky again (see docs/plugins.md, "Removing or renaming a plugin")'
    )
    expect(reasons.filter((r) => r.endsWith('see cairn dead'))).toEqual([])

    for (const args of [
      ['replay', '--dead', '--plugin', 'flaky'],
      ['replay', '--effects', '--dead', '--plugin', 'flaky'],
      ['plugins', 'rebuild', 'flaky']
    ]) {
      const r = await cairn([...args, '--data', a.dir])
      expect({ args, code: r.code, stdout: r.stdout }).toEqual({ args, code: 1, stdout: '' })
      expect(r.stderr).toContain(`The node running on ${a.dir} has not loaded plugin flaky (it runs workspace-access): nothing would`)
    }
    const all = await cairn(['replay', '--dead', '--data', a.dir])
    expect({ code: all.code, stdout: JSON.parse(all.stdout) }).toEqual({ code: 0, stdout: { queued: 0 } })
    expect(all.stderr).toContain('left out the dead letters and held events of flaky: the running node has not loaded it')
    // A selection that names none of the unloaded plugin's dead letters says nothing about it.
    const { event_id: other } = await a.publish({ type: 'workspace.invited', payload: { workspace_id: 'w', invitee: 'x@example.com', role: 'member', invited_by: 'a@example.com' } })
    for (const args of [
      ['replay', '--type', 'workspace.invited'],
      ['replay', other],
      ['replay', '--effects', '--dead']
    ]) {
      const r = await cairn([...args, '--data', a.dir])
      expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 0, stderr: '' })
    }
    expect(query(a.dir, 'SELECT plugin FROM plugin_replay')).toEqual([])
    expect(query(a.dir, "SELECT value FROM meta WHERE key = 'plugin_rebuild:flaky'")).toEqual([])
  } finally {
    await a.stop()
  }
})
