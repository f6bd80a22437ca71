/**
 * Writes PNGs of each console page into docs/console/, from a demo network of three `dist/cairn` nodes on
 * 127.0.0.1 (alpha, bravo, charlie) publishing for a while, seen from bravo: the overview at 1280x800 in the
 * light and the dark scheme and on a narrow window, then every other page.
 *
 * Usage: npm run screenshots   (builds dist/cairn first; needs Debian's chromium, see .ci/run)
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { cairn, invite, NodeProcess, ROOT, tempDir, waitFor } from '../test/helpers/process.ts'
import { launchChromium } from '../test/helpers/browser.ts'

const OUT = join(ROOT, 'docs', 'console')

// A plugin that refuses invitations to the quarantine workspace: the Plugins page then has a dead letter.
const AUDIT = `export default ({ v, definePlugin }) => definePlugin({
  name: 'audit-log', version: '1.2.0',
  handles: { 'workspace.invited': { version: 1, payload: v.object({ workspace_id: v.string(), invitee: v.string(), role: v.string(), invited_by: v.string() }) } },
  migrations: ['CREATE TABLE audit_log (event_id TEXT PRIMARY KEY, line TEXT NOT NULL)'],
  apply (event, { db }) {
    if (event.payload.workspace_id === 'quarantine') throw new Error('workspace quarantine is closed to invitations')
    db.run('INSERT INTO audit_log (event_id, line) VALUES (?, ?)', [event.event_id, event.payload.invitee + ' invited'])
  }
})
`

using tmp = tempDir('cairn-screenshots-')
const plugins = join(tmp.path, 'plugins')
mkdirSync(plugins)
writeFileSync(join(plugins, 'audit-log.js'), AUDIT)
await using alpha = await NodeProcess.init(tmp.path, 'alpha')
await using bravo = await NodeProcess.init(tmp.path, 'bravo', { network: alpha })
await using charlie = await NodeProcess.init(tmp.path, 'charlie', { network: alpha })
await alpha.start()
// bravo prunes what everyone has after 20 s, so that the Storage page shows a housekeeping run.
await bravo.start(['--bootstrap', alpha.addrs[0], '--plugins', plugins, '--plugins', join(ROOT, 'examples'), '--retention', '20s', '--housekeeping-interval', '15s'])
await charlie.start(['--bootstrap', alpha.addrs[0]])
await waitFor('bravo sees two peers', async () => (await bravo.status()).peers.length === 2, 60_000)

// A minute of uneven traffic from all three, so that the charts have a shape.
const until = Date.now() + 60_000
let i = 0
const traffic = (async () => {
  while (Date.now() < until) {
    const wave = 1 + Math.round(4 * (1 + Math.sin(i / 15)))
    await Promise.all([...Array(wave)].map(async (_, k) => await [alpha, bravo, charlie][(i + k) % 3].publish(invite(i * 10 + k))))
    if (i % 40 === 5) await alpha.publish({ type: 'workspace.invited', payload: { workspace_id: 'quarantine', invitee: `q${i}@example.com`, role: 'member', invited_by: 'boss@example.com' } })
    i++
    await Bun.sleep(250)
  }
})()
await traffic
await waitFor('a dead letter on bravo', async () => (await bravo.status()).plugins.dead_letters > 0, 60_000)
await waitFor('a housekeeping run on bravo that pruned files', async () => ((await bravo.status()).housekeeping.last?.pruned_files ?? 0) > 0, 60_000)

const link = (await cairn(['console', '--data', bravo.dir, '--no-open'])).stdout.trim()
const base = `http://${bravo.http}`
const browser = await launchChromium()
try {
  mkdirSync(OUT, { recursive: true })
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light' })
  const page = await context.newPage()
  await page.goto(link)
  const shot = async (name: string): Promise<void> => {
    await page.screenshot({ path: join(OUT, `${name}.png`) })
    console.log(`wrote docs/console/${name}.png`)
  }
  const overview = async (): Promise<void> => {
    await page.goto(`${base}/`)
    await page.locator('#chart-lag canvas').first().waitFor()
    await page.waitForFunction(() => (document.querySelector('#chart-rate .u-over') as HTMLElement | null)?.offsetWidth !== 0)
  }
  await overview()
  await shot('overview')
  await page.emulateMedia({ colorScheme: 'dark' })
  await overview()
  await shot('overview-dark')
  await page.emulateMedia({ colorScheme: 'light' })
  await page.setViewportSize({ width: 390, height: 844 })
  await overview()
  await shot('overview-narrow')
  await page.setViewportSize({ width: 1280, height: 800 })
  for (const name of ['producers', 'plugins', 'members', 'storage']) {
    await page.goto(`${base}/console/${name}`)
    await shot(name)
  }
  await page.goto(`${base}/console/events`)
  await page.locator('#events > li summary').first().click()
  await shot('events')
} finally {
  await browser.close()
}
