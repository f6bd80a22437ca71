import { expect, test } from 'bun:test'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { initDataDir } from '../../src/datadir/init.ts'
import type { CairnNode } from '../../src/node/node.ts'
import { query } from '../helpers/db.ts'
import { inProcessNode } from '../helpers/forge.ts'
import { tempDir, waitFor } from '../helpers/process.ts'

/** Writes a plugin `name` handling `type`, whose effect runs `body` (JavaScript, with `event`), into a folder of its own. */
function plugin(parent: string, name: string, type: string, body: string): string {
  const dir = join(parent, name)
  mkdirSync(dir)
  writeFileSync(
    join(dir, `${name}.js`),
    `import { appendFileSync } from 'node:fs'
export default ({ v, definePlugin }) =>
  definePlugin({
    name: '${name}',
    version: '1.0.0',
    handles: { '${type}': { version: 1, payload: v.object({ out: v.string() }) } },
    apply() {},
    async effect(event) {
      ${body}
    }
  })
`
  )
  return dir
}

// A plugin removed from --plugins leaves its effects not done in plugin_effects (they run when it comes back).
// They must neither take the places of the loaded plugins' due effects (a run takes 100 at a time, oldest due
// first) nor keep the host running rounds back to back for effects it cannot run.
test("effects of a plugin no longer loaded neither hold back the loaded plugins' effects nor keep the plugin rounds spinning", async () => {
  using tmp = tempDir()
  const dir = join(tmp.path, 'a')
  await initDataDir(dir, { newNetwork: true })
  const flaky = plugin(tmp.path, 'flaky', 'test.flaky', "throw new Error('the remote service is down')")
  const echo = plugin(tmp.path, 'echo', 'test.echo', "appendFileSync(event.payload.out, 'ran\\n')")
  const out = join(tmp.path, 'out')
  let a: CairnNode | undefined = await inProcessNode(dir, { plugins: flaky })
  try {
    await Promise.all(Array.from({ length: 120 }, async () => await a!.publish({ type: 'test.flaky', payload: { out } })))
    const pending = (): number => query<{ n: number }>(dir, 'SELECT count(*) AS n FROM plugin_effects WHERE done_at IS NULL AND attempts >= 1')[0].n
    await waitFor("flaky's 120 effects to fail once", () => pending() === 120, 60_000)
    await a.stop()
    a = undefined

    // flaky is removed; its effects are due by now.
    const node = await inProcessNode(dir, { plugins: echo, 'allow-unknown-types': true })
    a = node
    await waitFor("flaky's effects to be due", () => query<{ t: number }>(dir, 'SELECT max(next_at) AS t FROM plugin_effects WHERE done_at IS NULL')[0].t < Date.now(), 30_000)
    await node.publish({ type: 'test.echo', payload: { out } })
    await waitFor("echo's effect to run", () => existsSync(out) && readFileSync(out, 'utf8') === 'ran\n', 30_000)
    // Idle now: no round under way or scheduled ('plugins:idle'). A host that counted flaky's due effects as
    // waiting would schedule the next round at the end of each, one after another, and never get there.
    await node.plugins.drain({ signal: AbortSignal.timeout(10_000) }).catch((err: Error) => {
      throw new Error(`the plugin host did not go idle: it keeps scheduling rounds (${err.message})`)
    })
    expect(pending()).toBe(120)
    await node.stop()
    a = undefined

    // flaky comes back in a release without an effect: its effects can never run, and are dropped.
    const quiet = join(tmp.path, 'quiet')
    mkdirSync(quiet)
    writeFileSync(
      join(quiet, 'flaky.js'),
      `export default ({ v, definePlugin }) =>
  definePlugin({ name: 'flaky', version: '2.0.0', handles: { 'test.flaky': { version: 1, payload: v.object({ out: v.string() }) } }, apply() {} })
`
    )
    a = await inProcessNode(dir, { plugins: quiet, 'allow-unknown-types': true })
    await waitFor("flaky's effects to be dropped", () => pending() === 0, 30_000)
  } finally {
    await a?.stop()
  }
}, 120_000)
