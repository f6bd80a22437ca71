import { expect, test } from 'bun:test'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { query } from '../helpers/db.ts'
import { cairn, NodeProcess, tempDir, waitFor } from '../helpers/process.ts'

// A test.gated event's effect counts its attempts in the file `runs` names and gives up (PermanentError)
// while the file `cure` names is missing: the remote service it stands for is down.
const GATED = `import { appendFileSync, existsSync } from 'node:fs'
export default ({ v, definePlugin, PermanentError }) =>
  definePlugin({
    name: 'gated',
    version: '1.0.0',
    handles: { 'test.gated': { version: 1, payload: v.object({ cure: v.string(), runs: v.string() }) } },
    apply() {},
    async effect(event) {
      appendFileSync(event.payload.runs, 'run\\n')
      if (!existsSync(event.payload.cure)) throw new PermanentError('the remote is down: ' + event.payload.cure + ' is missing')
    }
  })
`

function pluginDir(parent: string): string {
  const dir = join(parent, 'plugins')
  mkdirSync(dir)
  writeFileSync(join(dir, 'gated.js'), GATED)
  return dir
}

const runsIn = (file: string): number => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).length : 0)

/** @returns how many effects in the node's plugin_effects are not done: due now, or waiting for a later try */
const notDone = (node: NodeProcess): number => query<{ n: number }>(node.dir, 'SELECT count(*) AS n FROM plugin_effects WHERE done_at IS NULL')[0].n

/**
 * Publishes a test.gated event whose effect succeeds and waits until it ran and nothing is left to run. Its effect
 * runs in a pass that takes every effect due, oldest first: one made due again before it would run in that pass,
 * ahead of it; and one due later would show as not done.
 */
async function laterEffectRan(node: NodeProcess, cure: string, runs: string): Promise<void> {
  await node.publish({ type: 'test.gated', payload: { cure, runs } })
  await waitFor('a later effect to run', () => runsIn(runs) === 1, 30_000)
  await waitFor('no effect left to run', () => notDone(node) === 0, 30_000)
}

async function effectCounts(node: NodeProcess): Promise<{ failing: number; givenUp: number; metrics: string }> {
  const s = await node.status()
  const text = await (await fetch(`http://${node.http}/metrics`)).text()
  const metrics = text
    .split('\n')
    .filter((l) => /^cairn_effects_(failing|given_up) /.test(l))
    .join('\n')
  return { failing: s.plugins.effects_failing, givenUp: s.plugins.effects_given_up, metrics }
}

test('cairn replay --effects runs a given-up effect once more on the running node, and says why it cannot otherwise', async () => {
  using tmp = tempDir()
  const plugins = pluginDir(tmp.path)
  const a = await NodeProcess.init(tmp.path, 'a')
  await a.start(['--plugins', plugins])
  try {
    const cure = join(tmp.path, 'cure')
    const runs = join(tmp.path, 'runs')
    const { event_id } = await a.publish({ type: 'test.gated', payload: { cure, runs } })
    await waitFor('the effect given up', async () => (await effectCounts(a)).givenUp === 1, 60_000)
    expect(runsIn(runs)).toBe(1)
    expect((await effectCounts(a)).metrics).toBe('cairn_effects_failing 0\ncairn_effects_given_up 1')

    const listed = await cairn(['dead', '--effects', '--data', a.dir])
    expect(listed.code).toBe(0)
    expect(listed.stdout).toContain(`${event_id}  test.gated  ${a.peerId.slice(-8)}#1  plugin gated  1 attempt(s)`)
    expect(listed.stdout).toContain('the remote is down')

    // Clear refusals: an unknown event, an unknown plugin, an event whose effect is not given up.
    const unknown = await cairn(['replay', '--effects', '0190aaaa-0000-7000-8000-000000000000', '--data', a.dir])
    expect(unknown.code).not.toBe(0)
    expect(unknown.stderr).toContain("No event 0190aaaa-0000-7000-8000-000000000000 in this node's events table")
    const noPlugin = await cairn(['replay', '--effects', '--dead', '--plugin', 'nope', '--data', a.dir])
    expect(noPlugin.code).not.toBe(0)
    expect(noPlugin.stderr).toContain('No plugin nope has run on this node')
    const fine = await a.publish({ type: 'test.gated', payload: { cure: runs, runs: join(tmp.path, 'runs-fine') } })
    await waitFor('the other effect ran', () => runsIn(join(tmp.path, 'runs-fine')) === 1)
    const notGivenUp = await cairn(['replay', '--effects', fine.event_id, '--data', a.dir])
    expect(notGivenUp.code).not.toBe(0)
    expect(notGivenUp.stderr).toContain(`No effect of event ${fine.event_id} is given up: plugin gated's effect ran`)

    // The remote is back: the operator replays the effect, from another process, while the node runs.
    writeFileSync(cure, '')
    const r = await cairn(['replay', '--effects', event_id, '--producer', a.peerId, '--plugin', 'gated', '--data', a.dir])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual({ queued: 1 })
    await waitFor('the replayed effect ran', () => runsIn(runs) === 2, 30_000)
    await waitFor('the counts moved', async () => (await effectCounts(a)).givenUp === 0, 30_000)
    expect(await effectCounts(a)).toEqual({ failing: 0, givenUp: 0, metrics: 'cairn_effects_failing 0\ncairn_effects_given_up 0' })

    // It ran once more, once: asked again, it is no longer given up, and it does not run again.
    const again = await cairn(['replay', '--effects', event_id, '--data', a.dir])
    expect(again.code).not.toBe(0)
    expect(again.stderr).toContain(`No effect of event ${event_id} is given up: plugin gated's effect ran`)
    await laterEffectRan(a, runs, join(tmp.path, 'runs-later'))
    expect(runsIn(runs)).toBe(2)
    expect((await cairn(['dead', '--effects', '--data', a.dir])).stdout.trim()).toBe('no effects given up')
  } finally {
    await a.stop()
  }
})

test('cairn replay --effects --dead on a stopped node: the effects run at its start, and one that fails again is given up again', async () => {
  using tmp = tempDir()
  const plugins = pluginDir(tmp.path)
  const a = await NodeProcess.init(tmp.path, 'a')
  const cure = join(tmp.path, 'cure')
  const runs = [join(tmp.path, 'runs-1'), join(tmp.path, 'runs-2')]
  await a.start(['--plugins', plugins])
  try {
    for (const r of runs) await a.publish({ type: 'test.gated', payload: { cure, runs: r } })
    await waitFor('both effects given up', async () => (await effectCounts(a)).givenUp === 2, 60_000)
  } finally {
    await a.stop()
  }
  const status = async (): Promise<{ effects_failing: number; effects_given_up: number }> => {
    const s = await cairn(['status', '--json', '--data', a.dir])
    expect(s.code).toBe(0)
    return JSON.parse(s.stdout).plugins
  }
  expect(await status()).toMatchObject({ effects_failing: 0, effects_given_up: 2 })

  // Replayed while the cause is not fixed yet: each runs once more at the start, and is given up again.
  const first = await cairn(['replay', '--effects', '--dead', '--data', a.dir])
  expect(first.code).toBe(0)
  expect(JSON.parse(first.stdout)).toEqual({ queued: 2 })
  expect(await status()).toMatchObject({ effects_failing: 0, effects_given_up: 0 })
  await a.start(['--plugins', plugins])
  try {
    await waitFor('both effects given up again', async () => runs.every((r) => runsIn(r) === 2) && (await effectCounts(a)).givenUp === 2, 60_000)
    // (its cure is a file that exists: runs-1)
    await laterEffectRan(a, runs[0], join(tmp.path, 'runs-later'))
    expect(runs.map(runsIn)).toEqual([2, 2])
  } finally {
    await a.stop()
  }

  // Fixed, and replayed by type: each runs once more and is done.
  writeFileSync(cure, '')
  const second = await cairn(['replay', '--effects', '--type', 'test.gated', '--since', '1h', '--data', a.dir])
  expect(second.code).toBe(0)
  expect(JSON.parse(second.stdout)).toEqual({ queued: 2 })
  await a.start(['--plugins', plugins])
  try {
    await waitFor('both effects ran', () => runs.every((r) => runsIn(r) === 3), 60_000)
    await waitFor('the counts moved', async () => (await effectCounts(a)).givenUp === 0, 30_000)
    expect((await effectCounts(a)).failing).toBe(0)
  } finally {
    await a.stop()
  }
  expect(await status()).toMatchObject({ effects_failing: 0, effects_given_up: 0 })
  expect(runs.map(runsIn)).toEqual([3, 3])
})
