import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { cairn, NodeProcess, tempDir, waitFor } from '../helpers/process.ts'
import { query } from '../helpers/db.ts'
import { launchChromium } from '../helpers/browser.ts'

const PLUGINS = join(import.meta.dir, 'plugins')

/** @returns a fresh one-time login link from `cairn console` */
async function loginLink(node: NodeProcess): Promise<string> {
  const r = await cairn(['console', '--data', node.dir, '--no-open'])
  if (r.code !== 0) throw new Error(`cairn console failed: ${r.stderr}`)
  return r.stdout.trim()
}

describe('the console in a real Chromium', () => {
  const tmp = tempDir('cairn-console-')
  let a: NodeProcess
  let b: NodeProcess
  let browser: Browser
  let context: BrowserContext
  let page: Page
  let base = ''

  beforeAll(async () => {
    a = await NodeProcess.init(tmp.path, 'a')
    b = await NodeProcess.init(tmp.path, 'b', { network: a })
    await a.start()
    await b.start(['--bootstrap', a.addrs[0], '--plugins', PLUGINS])
    base = `http://${b.http}`
    await waitFor('a and b connected', async () => (await b.status()).peers.length > 0)
    browser = await launchChromium({ hostMap: ['rebind.test'] })
    context = await browser.newContext({ viewport: { width: 1280, height: 800 } })
    page = await context.newPage()
  }, 120_000)

  afterAll(async () => {
    await browser?.close()
    await b?.[Symbol.asyncDispose]()
    await a?.[Symbol.asyncDispose]()
    tmp[Symbol.dispose]()
  })

  test('the login link logs the browser in once; a second use of it is refused', async () => {
    const link = await loginLink(b)
    const res = await page.goto(link)
    expect(res?.status()).toBe(200)
    expect(new URL(page.url()).pathname).toBe('/')
    expect(await page.title()).toBe('Overview · cairn')
    const cookie = (await context.cookies()).find((c) => c.name.startsWith('cairn_console_'))
    expect({ httpOnly: cookie?.httpOnly, sameSite: cookie?.sameSite }).toEqual({ httpOnly: true, sameSite: 'Strict' })
    // The session opens the console only: /v1 still wants the bearer token.
    const v1 = await context.request.post(`${base}/v1/events`, { data: { type: 'workspace.invited', payload: {} }, headers: { origin: base } })
    expect(v1.status()).toBe(401)
    expect((await context.request.get(`${base}/v1/stream`)).status()).toBe(401)

    const other = await browser.newContext()
    try {
      const again = await (await other.newPage()).goto(link)
      expect(again?.status()).toBe(403)
      expect(await again?.text()).toContain('used up, expired or unknown')
    } finally {
      await other.close()
    }
  })

  test("the overview shows the node's peer id and verdict", async () => {
    await page.goto(`${base}/`)
    expect(await page.locator('#peer-id').textContent()).toBe(b.peerId)
    const verdict = (await b.status()).verdict
    await page.waitForFunction((v) => document.getElementById('verdict')?.textContent === v, verdict)
    // The charts are drawn (uPlot's canvas) from the live series.
    await page.locator('#chart-rate canvas').first().waitFor()
    // The numbers update without a reload: an event published on a is counted once b has it.
    const before = Number(await page.locator('#events-count').textContent())
    await a.publish({ type: 'workspace.invited', payload: { workspace_id: 'w1', invitee: 'live@example.com', role: 'member', invited_by: 'admin@example.com' } })
    await page.waitForFunction((n) => Number(document.getElementById('events-count')?.textContent) > n, before, { timeout: 10_000 })
  })

  test('an event published on another node appears in the live tail within 2 s', async () => {
    await page.goto(`${base}/console/events`)
    await page.waitForFunction(() => document.getElementById('tail-state')?.dataset.live === 'true', undefined, { timeout: 5000 })
    const started = Date.now()
    const { event_id } = await a.publish({ type: 'workspace.invited', payload: { workspace_id: 'w1', invitee: 'tail@example.com', role: 'member', invited_by: 'admin@example.com' } })
    await page.waitForFunction((id) => document.getElementById('events')?.textContent?.includes(id) === true, event_id, { timeout: 10_000 })
    expect(Date.now() - started).toBeLessThan(2000)
    // Expanding it shows the envelope, its file path and CID.
    const item = page.locator('#events > li', { hasText: event_id })
    await item.locator('summary').click()
    expect(await item.locator('pre').textContent()).toContain(`"producer": "${a.peerId}"`)
    const text = (await item.textContent()) ?? ''
    expect(text).toMatch(new RegExp(`${a.peerId}/\\d{4}-\\d{2}-\\d{2}/\\d{2}/\\d{12}-${event_id}\\.json`))
    expect(text).toMatch(/baf[a-z0-9]{20,}/)
  })

  test('the tail filters by type and by producer, on the page and live', async () => {
    await page.goto(`${base}/console/events?producer=${b.peerId}`)
    await page.waitForFunction(() => document.getElementById('tail-state')?.dataset.live === 'true', undefined, { timeout: 5000 })
    const fromA = await a.publish({ type: 'workspace.invited', payload: { workspace_id: 'w2', invitee: 'from-a@example.com', role: 'member', invited_by: 'admin@example.com' } })
    const fromB = await b.publish({ type: 'workspace.invited', payload: { workspace_id: 'w2', invitee: 'from-b@example.com', role: 'member', invited_by: 'admin@example.com' } })
    await page.waitForFunction((id) => document.getElementById('events')?.textContent?.includes(id) === true, fromB.event_id, { timeout: 10_000 })
    await waitFor("a's event on b", () => query(b.dir, 'SELECT 1 FROM events WHERE event_id = ?', [fromA.event_id]).length === 1)
    const shown = async (): Promise<string[]> => await page.locator('#events > li code.producer').evaluateAll((els) => els.map((e) => e.getAttribute('title') ?? ''))
    expect([...new Set(await shown())]).toEqual([b.peerId])
    await page.reload()
    expect(await page.locator('#events').textContent()).not.toContain(fromA.event_id)
    expect([...new Set(await shown())]).toEqual([b.peerId])

    await page.goto(`${base}/console/events?type=permission.revoked`)
    expect(await page.locator('#events > li').count()).toBe(0)
    await page.waitForFunction(() => document.getElementById('tail-state')?.dataset.live === 'true', undefined, { timeout: 5000 })
    const revoked = await a.publish({ type: 'permission.revoked', payload: { workspace_id: 'w2', subject: 'from-a@example.com', permission: 'write', reason: 'test' } })
    await page.waitForFunction((id) => document.getElementById('events')?.textContent?.includes(id) === true, revoked.event_id, { timeout: 10_000 })
    expect(await page.locator('#events > li .type').allTextContents()).toEqual(['permission.revoked v1'])
  })

  test('every page fits a narrow window without sideways scrolling, and Tab reaches the skip link first', async () => {
    const narrow = await context.newPage()
    try {
      await narrow.setViewportSize({ width: 390, height: 844 })
      for (const path of ['/', '/console/producers', '/console/events', '/console/plugins', '/console/members', '/console/storage']) {
        const res = await narrow.goto(`${base}${path}`)
        expect(res?.status()).toBe(200)
        const overflow = await narrow.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
        expect({ path, overflow }).toEqual({ path, overflow: 0 })
        await narrow.keyboard.press('Tab')
        expect(await narrow.evaluate(() => document.activeElement?.textContent)).toBe('Skip to content')
        if (path === '/console/members') expect(await narrow.textContent('main')).toContain('until an owner publishes the first change')
      }
    } finally {
      await narrow.close()
    }
  })

  test('a request without the session is refused', async () => {
    const fresh = await browser.newContext()
    try {
      const p = await fresh.newPage()
      const res = await p.goto(`${base}/console/producers`)
      expect(res?.status()).toBe(401)
      expect(await p.textContent('main')).toContain('No console session')
      const api = await fresh.request.get(`${base}/console/api/overview`)
      expect(api.status()).toBe(401)
      expect((await api.json()).error.code).toBe('no_session')
    } finally {
      await fresh.close()
    }
  })

  test('a dead letter replayed from the Plugins page is applied exactly once; a cross-origin POST and a foreign Host are refused', async () => {
    const cure = join(tmp.path, 'cured')
    const { event_id } = await a.publish({ type: 'test.flaky', payload: { cure } })
    await waitFor('the flaky event dead-lettered on b', () => query(b.dir, 'SELECT 1 FROM dead_letters WHERE event_id = ?', [event_id]).length === 1, 60_000)
    writeFileSync(cure, 'yes')

    // A page on another origin (a site on another port counts as the same site, so the cookie goes along)
    // posts the replay form: the Origin check refuses it.
    const evil = Bun.serve({
      hostname: '127.0.0.1',
      port: 0,
      fetch: () =>
        new Response(
          `<form id="f" method="post" action="${base}/console/replay"><input name="event_id" value="${event_id}"><input name="producer" value="${a.peerId}"></form><script>document.getElementById('f').submit()</script>`,
          { headers: { 'content-type': 'text/html' } }
        )
    })
    try {
      const refused = page.waitForResponse((r) => r.url() === `${base}/console/replay`)
      await page.goto(`http://127.0.0.1:${evil.port}/`)
      const res = await refused
      expect(res.status()).toBe(403)
      expect((await res.json()).error.code).toBe('cross_origin')
    } finally {
      await evil.stop(true)
    }
    expect(query(b.dir, 'SELECT count(*) AS n FROM plugin_replay')).toEqual([{ n: 0 }])

    // A page whose name resolves to 127.0.0.1 (DNS rebinding) gets nothing either.
    const rebound = await page.goto(`http://rebind.test:${new URL(base).port}/`)
    expect(rebound?.status()).toBe(421)

    // The operator's own page, with the keyboard: focus Replay and press Enter.
    await page.goto(`${base}/console/plugins`)
    const replay = page.getByRole('button', { name: `Replay ${event_id}` })
    await replay.focus()
    await page.keyboard.press('Enter')
    await page.waitForURL(`${base}/console/plugins?queued=1`)
    expect(await page.textContent('.notice')).toContain('Replay queued for 1')
    await waitFor('the replayed event applied', () => query<{ n: number }>(b.dir, 'SELECT n FROM flaky_applied WHERE event_id = ?', [event_id])[0]?.n === 1, 30_000)
    await waitFor('the dead letter cleared', () => query(b.dir, 'SELECT 1 FROM dead_letters WHERE event_id = ?', [event_id]).length === 0)

    // A second replay of the same event is a no-op: it was applied.
    await page.goto(`${base}/console/plugins`)
    expect(await page.getByRole('button', { name: `Replay ${event_id}` }).count()).toBe(0)
    const card = page.locator('section[aria-label="Plugin flaky"]')
    expect(await card.textContent()).toContain('Backlog: 0 event(s) after its cursor.')
    expect(await card.textContent()).toContain('test.flaky versions 1')
    const again = await page.request.post(`${base}/console/replay`, { form: { event_id, producer: a.peerId }, headers: { origin: base }, maxRedirects: 0 })
    expect(again.headers().location).toBe('/console/plugins?queued=0')
    expect(query<{ n: number }>(b.dir, 'SELECT n FROM flaky_applied WHERE event_id = ?', [event_id])).toEqual([{ n: 1 }])
  }, 120_000)
})
