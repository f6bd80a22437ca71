import { describe, expect, test } from 'bun:test'
import { Hono } from 'hono'
import { consoleApp, type ConsoleDeps } from '../../src/http/console/app.ts'
import { ConsoleSessions } from '../../src/http/console/sessions.ts'
import { SeriesWindow } from '../../src/http/console/series.ts'
import { silentLog } from '../../src/log/logger.ts'

const HOST = '127.0.0.1:7400'
const TOKEN = 'the-api-token'
const unused = (): never => {
  throw new Error('not used by this test')
}

/**
 * @returns the console app over stub deps, mounted on an endpoint that has, with `v1`, its own routes (such
 * as /v1/members); only the sessions and the members part are real
 */
function app(members: ConsoleDeps['members'], v1?: (endpoint: Hono) => void) {
  const deps: ConsoleDeps = {
    token: TOKEN,
    sessions: new ConsoleSessions(),
    log: silentLog,
    status: unused,
    series: unused,
    events: { list: unused, byId: unused } as unknown as ConsoleDeps['events'],
    stream: { events: unused, watermark: unused, wait: unused } as unknown as ConsoleDeps['stream'],
    plugins: unused,
    replay: unused,
    members,
    storage: unused,
    bound: () => ({ port: 7400 })
  }
  const endpoint = new Hono()
  v1?.(endpoint)
  endpoint.route('/', consoleApp(deps, { ownHost: (host) => host === HOST, api: async (path, init) => await endpoint.request(path, init) }))
  const request = async (path: string, init: RequestInit & { headers?: Record<string, string> } = {}) =>
    await endpoint.request(`http://${HOST}${path}`, { ...init, headers: { host: HOST, ...init.headers } })
  return { request }
}

/** @returns the session cookie header a login link gives */
async function login(request: ReturnType<typeof app>['request']): Promise<string> {
  const minted = await request('/console/login-links', { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })
  const { url } = (await minted.json()) as { url: string }
  const res = await request(new URL(url).pathname + new URL(url).search)
  expect(res.status).toBe(303)
  return (res.headers.get('set-cookie') ?? '').split(';')[0]
}

const form = (fields: Record<string, string>): string => new URLSearchParams(fields).toString()
const FORM = 'application/x-www-form-urlencoded'

describe('the console app', () => {
  test('only the API token mints a login link, and a link works once', async () => {
    const { request } = app(() => ({ source: 'open', self_is_owner: false, members: [] }))
    expect((await request('/console/login-links', { method: 'POST' })).status).toBe(401)
    expect((await request('/console/login-links', { method: 'POST', headers: { authorization: 'Bearer wrong' } })).status).toBe(401)
    const { url } = (await (await request('/console/login-links', { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { url: string }
    expect(url).toStartWith(`http://${HOST}/console/login?token=`)
    const path = new URL(url).pathname + new URL(url).search
    const first = await request(path)
    expect({ status: first.status, location: first.headers.get('location') }).toEqual({ status: 303, location: '/' })
    expect(first.headers.get('set-cookie')).toMatch(/^cairn_console_7400=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict$/)
    expect((await request(path)).status).toBe(403)

    // Logging out (a guarded POST) ends the session.
    const cookie = (first.headers.get('set-cookie') ?? '').split(';')[0]
    expect((await request('/console/logout', { method: 'POST', headers: { cookie } })).status).toBe(403)
    const out = await request('/console/logout', { method: 'POST', headers: { cookie, origin: `http://${HOST}` } })
    expect({ status: out.status, cookie: out.headers.get('set-cookie') }).toEqual({ status: 200, cookie: 'cairn_console_7400=; Max-Age=0; Path=/' })
    expect((await request('/console/members', { headers: { cookie } })).status).toBe(401)
  })

  test('without /v1/members, the Members page shows the static setting, says so and refuses changes', async () => {
    const { request } = app(() => ({ source: 'setting', self_is_owner: false, members: [{ peer_id: '12D3KooWA', name: 'alpha', self: true }] }))
    const cookie = await login(request)
    const page = await (await request('/console/members', { headers: { cookie } })).text()
    expect(page).toContain('Membership is the static setting')
    expect(page).not.toContain('Add member')
    const res = await request('/console/members', { method: 'POST', headers: { cookie, origin: `http://${HOST}`, 'content-type': FORM }, body: form({ peer_id: '12D3KooWB' }) })
    expect(res.status).toBe(400)
    expect(await res.text()).toContain('change the members list in config.json and restart')
  })

  test('with /v1/members, an owner lists, adds and removes members through it; its refusal is shown; foreign Origin, Host or no session are refused', async () => {
    const calls: unknown[] = []
    const { request } = app(unused, (endpoint) => {
      endpoint.get('/v1/members', (c) =>
        c.json({
          source: 'changes',
          self_is_owner: true,
          members: [
            { peer_id: '12D3KooWA', name: 'alpha', role: 'owner', self: true },
            { peer_id: '12D3KooWC', name: null, role: 'member', connected: false }
          ]
        })
      )
      endpoint.post('/v1/members', async (c) => {
        const body = await c.req.json()
        calls.push({ add: body })
        if (body.peer_id === 'bad') return c.json({ error: { code: 'not_owner', message: 'Cannot change the membership: this node is not an owner' } }, 403)
        return c.json({ change: {} }, 201)
      })
      endpoint.delete('/v1/members/:peer', (c) => {
        calls.push({ remove: c.req.param('peer') })
        return c.json({ change: {} })
      })
    })
    const cookie = await login(request)
    const page = await (await request('/console/members', { headers: { cookie } })).text()
    expect(page).toContain('Add member')
    expect(page).toContain('aria-label="Remove 12D3KooWC"')
    expect(page).not.toContain('aria-label="Remove 12D3KooWA"')
    const post = async (path: string, fields: Record<string, string>, headers: Record<string, string> = {}) =>
      await request(path, { method: 'POST', headers: { cookie, origin: `http://${HOST}`, 'content-type': FORM, ...headers }, body: form(fields) })

    const added = await post('/console/members', { peer_id: '12D3KooWB', name: 'bravo', role: 'member' })
    expect({ status: added.status, location: added.headers.get('location') }).toEqual({ status: 303, location: '/console/members?done=added' })
    const removed = await post('/console/members/remove', { peer_id: '12D3KooWC' })
    expect(removed.headers.get('location')).toBe('/console/members?done=removed')
    const refused = await post('/console/members', { peer_id: 'bad' })
    expect(refused.status).toBe(403)
    expect(await refused.text()).toContain('this node is not an owner')

    expect((await post('/console/members', { peer_id: 'X' }, { origin: 'http://evil.example' })).status).toBe(403)
    expect((await request('/console/members', { method: 'POST', headers: { cookie, 'content-type': FORM }, body: form({ peer_id: 'X' }) })).status).toBe(403)
    expect((await post('/console/members', { peer_id: 'X' }, { host: 'evil.example:7400', origin: 'http://evil.example:7400' })).status).toBe(403)
    expect((await post('/console/members', { peer_id: 'X' }, { cookie: 'cairn_console_7400=forged' })).status).toBe(401)
    expect((await request('/console/members')).status).toBe(401)
    expect(calls).toEqual([{ add: { peer_id: '12D3KooWB', name: 'bravo', role: 'member' } }, { remove: '12D3KooWC' }, { add: { peer_id: 'bad' } }])
  })
})

describe('ConsoleSessions', () => {
  test('a link expires after ten minutes and a session after twelve hours; both tables are bounded', () => {
    let now = 0
    const s = new ConsoleSessions(() => now)
    const late = s.createLink()
    now += 10 * 60_000
    expect(s.redeem(late)).toBeUndefined()
    const session = s.redeem(s.createLink())!
    expect(s.valid(session)).toBe(true)
    now += 12 * 60 * 60_000
    expect(s.valid(session)).toBe(false)

    const links = Array.from({ length: 17 }, () => s.createLink())
    expect(s.redeem(links[0])).toBeUndefined()
    const sessions = links.slice(1).flatMap((l) => [s.redeem(l)!, ...Array.from({ length: 3 }, () => s.redeem(s.createLink())!)])
    expect(sessions.length).toBe(64)
    const more = s.redeem(s.createLink())!
    expect([s.valid(sessions[0]), s.valid(sessions[1]), s.valid(more)]).toEqual([false, true, true])
    s.end(more)
    expect(s.valid(more)).toBe(false)
  })
})

describe('SeriesWindow', () => {
  test('turns readings into rates, keeps five minutes of them and charts the most lagging producers', () => {
    const w = new SeriesWindow()
    for (let i = 0; i <= 200; i++) {
      w.add(i * 2000, { published: i * 10, ingested: i * 20, applied: i * 20, lag: Array.from({ length: 12 }, (_, p) => ({ producer: `p${String(p).padStart(2, '0')}`, lag_events: p })) })
    }
    const s = w.series()
    expect(s.t.length).toBe(149)
    expect([...new Set(s.published)]).toEqual([5])
    expect([...new Set(s.applied)]).toEqual([10])
    expect(Object.keys(s.lag)).toEqual(['p11', 'p10', 'p09', 'p08', 'p07', 'p06', 'p05', 'p04'])
  })
})
