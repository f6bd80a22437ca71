import { Hono, type Context } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { getCookie, setCookie, deleteCookie } from 'hono/cookie'
import { createHash, timingSafeEqual } from 'node:crypto'
import type { Log } from '../../log/logger.ts'
import type { StatusDocument } from '../../node/status.ts'
import type { PluginInfo } from '../../plugins/load.ts'
import type { EventsTable } from '../../store/events.ts'
import type { DeadLetter, HeldEvent } from '../../store/pluginState.ts'
import { streamEvents, type StreamDeps } from '../stream.ts'
import { ASSETS } from './assets.ts'
import { eventsPage, loginNeeded, membersPage, overviewPage, pluginsPage, producersPage, storagePage, type StorageView } from './pages.ts'
import { MemberChangeRefused } from '../../errors.ts'
import { type MembersView, membersThroughApi } from './members.ts'
import type { Series } from './series.ts'
import type { ConsoleSessions } from './sessions.ts'

/** What the console reads from and does to the node. */
export interface ConsoleDeps {
  /** the API token: only a holder of it (`cairn console`) may mint a login link */
  token: string
  sessions: ConsoleSessions
  log: Log
  status: () => Promise<StatusDocument>
  series: () => Series
  events: EventsTable
  /** the stream the live tail reads (rows every plugin has processed) */
  stream: StreamDeps
  /** the loaded plugins (each with its backlog: events after its cursor), schemas, and the first `rows` dead letters and held events */
  plugins: (rows: number) => { list: Array<PluginInfo & { backlog: number }>; schema: (type: string, version: number) => object; dead: DeadLetter[]; held: HeldEvent[] }
  /** queues one producer's event for replay, as `cairn replay EVENT_ID --producer P` does; returns the pairs queued */
  replay: (eventId: string, producer: string) => number
  /** the static membership setting, shown where the node has no `/v1/members` routes */
  members: () => MembersView
  storage: () => StorageView
  bound: () => { port?: number; host?: string }
}

/** What the console takes from the endpoint it is mounted on. */
export interface ConsoleOptions {
  /** whether a Host header names this endpoint (the endpoint's own check) */
  ownHost: (host: string | undefined) => boolean
  /** sends a request to the endpoint's own `/v1` routes in process, with the API token (the Members page uses `/v1/members` where it exists) */
  api: (path: string, init?: RequestInit) => Promise<Response>
}

/** Dead letters and held events a page lists at most (the CLI lists them all). */
const MAX_ROWS = 500

/** Rows the events page shows before its live tail. */
const RECENT_EVENTS = 100
/** The console's pages load their scripts and styles from this endpoint only, and no other site may frame them. */
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

/**
 * @returns the event stream with a comment line first: a browser's EventSource reports itself open only once
 * bytes arrive, and a quiet stream's first write is otherwise its heartbeat
 */
function opened(res: Response): Response {
  const body = res.body
  if (body == null) return res
  const hello = new TextEncoder().encode(': connected\n\n')
  const reader = body.getReader()
  const piped = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(hello)
    },
    async pull(controller) {
      const { value, done } = await reader.read()
      if (done) controller.close()
      else controller.enqueue(value)
    },
    async cancel(reason) {
      await reader.cancel(reason)
    }
  })
  return new Response(piped, { status: res.status, headers: res.headers })
}

const problem = (c: Context, status: 401 | 403 | 400 | 404, code: string, message: string): Response => c.json({ error: { code, message } }, status)

/**
 * The browser console, served on the loopback endpoint at `/` and under `/console/`. A browser gets a
 * session only through a one-time link that `cairn console` mints with the API token; the session is an
 * HttpOnly, SameSite=Strict cookie named after the port (two nodes on one host keep separate sessions).
 * Every page and console API needs the session; every state-changing request also needs a Host naming
 * this endpoint and an Origin equal to it. Nothing here touches `/v1`, whose bearer token stays the only way in.
 *
 * @param options the endpoint's Host check, and how to call its own `/v1` routes
 * @returns a hono app to mount at `/`
 */
export function consoleApp(deps: ConsoleDeps, options: ConsoleOptions): Hono {
  const { ownHost } = options
  const app = new Hono()
  const cookieName = (): string => `cairn_console_${deps.bound().port ?? 0}`
  const tokenDigest = createHash('sha256').update(deps.token).digest()

  app.use('*', async (c, next) => {
    await next()
    c.header('content-security-policy', CSP)
    c.header('x-content-type-options', 'nosniff')
    // same-origin, not no-referrer: with no-referrer a browser sends `Origin: null` on its own form posts.
    c.header('referrer-policy', 'same-origin')
    c.header('cache-control', 'no-store')
  })

  app.get('/console/assets/:name', (c) => {
    const asset = ASSETS[c.req.param('name')]
    if (asset == null) return problem(c, 404, 'not_found', `No console asset ${c.req.param('name')}`)
    return c.body(asset.body, 200, { 'content-type': asset.type })
  })

  // Minted by `cairn console` with the API token; never by a browser.
  app.post('/console/login-links', (c) => {
    const m = /^Bearer (.+)$/.exec(c.req.header('authorization') ?? '')
    if (m == null || !timingSafeEqual(createHash('sha256').update(m[1]).digest(), tokenDigest)) {
      return problem(c, 401, 'unauthorized', 'Unauthorized: minting a console login link needs Authorization: Bearer <the token in api.token>')
    }
    const host = c.req.header('host') ?? '127.0.0.1'
    return c.json({ url: `http://${host}/console/login?token=${deps.sessions.createLink()}` })
  })

  app.get('/console/login', (c) => {
    const session = deps.sessions.redeem(c.req.query('token') ?? '')
    if (session == null) {
      deps.log.warn('console login refused: the link is unknown, used or expired', { reason: 'console_login_refused' })
      return c.html(loginNeeded('This login link is used up, expired or unknown: each link works once.'), 403)
    }
    setCookie(c, cookieName(), session, { httpOnly: true, sameSite: 'Strict', path: '/' })
    deps.log.info('console session started', { reason: 'console_login' })
    return c.redirect('/', 303)
  })

  // Every other console route needs the session; state-changing ones also this endpoint's Host and Origin.
  const guard = async (c: Context, next: () => Promise<void>): Promise<Response | undefined> => {
    const api = c.req.path.startsWith('/console/api/')
    if (c.req.method !== 'GET' && c.req.method !== 'HEAD') {
      const host = c.req.header('host')
      if (!ownHost(host)) return problem(c, 403, 'foreign_host', `Refused: Host ${host ?? '(none)'} is not this loopback endpoint`)
      const origin = c.req.header('origin')
      if (origin !== `http://${host}`) {
        deps.log.warn(`console request refused: Origin ${origin ?? '(none)'} is not http://${host}`, { reason: 'console_cross_origin' })
        return problem(c, 403, 'cross_origin', `Refused: a console request must come from the console's own page (Origin ${origin ?? '(none)'} is not http://${host})`)
      }
    }
    if (!deps.sessions.valid(getCookie(c, cookieName()))) {
      if (api || c.req.method !== 'GET') return problem(c, 401, 'no_session', 'No console session: run cairn console --data DIR and open the link it prints')
      return c.html(loginNeeded('No console session in this browser.'), 401)
    }
    await next()
    return undefined
  }
  app.use('/', guard)
  app.use('/console/*', guard)

  app.get('/', async (c) => c.html(overviewPage(await deps.status())))
  app.get('/console/producers', async (c) => c.html(producersPage(await deps.status())))
  app.get('/console/events', (c) => {
    const type = c.req.query('type')?.trim() || undefined
    const producer = c.req.query('producer')?.trim() || undefined
    const upTo = deps.stream.watermark()
    const rows = deps.events.list({ upTo, types: type == null ? undefined : [type], producer, limit: RECENT_EVENTS, newestFirst: true })
    return c.html(eventsPage(rows, { type, producer }, upTo))
  })
  app.get('/console/plugins', async (c) => {
    const p = deps.plugins(MAX_ROWS)
    const s = await deps.status()
    const queued = /^\d{1,6}$/.test(c.req.query('queued') ?? '') ? Number(c.req.query('queued')) : undefined
    const notice =
      queued == null
        ? undefined
        : queued > 0
          ? `Replay queued for ${queued} (plugin, event) pair(s): the node runs them within a second.`
          : 'Nothing to replay: every plugin already applied that event.'
    return c.html(
      pluginsPage({
        plugins: p.list.map((info) => ({ ...info, schemas: Object.fromEntries(Object.entries(info.types).map(([t, vs]) => [t, p.schema(t, Math.max(...vs))])) })),
        states: s.plugin_state,
        backlog: s.plugins.backlog,
        retrying: s.plugins.retrying,
        dead: p.dead,
        deadTotal: s.plugins.dead_letters,
        held: p.held,
        heldTotal: s.plugins.held,
        notice
      })
    )
  })
  const members = membersThroughApi(options.api, deps.members)
  const membersPageOf = async (notice?: string, error?: string) => membersPage({ ...(await members.list()), notice, error })
  app.get('/console/members', async (c) => {
    const done = c.req.query('done')
    // Published is all this node can say: a conflicting change of another owner, which may come later, can
    // make every node pass over this one.
    const then = 'reaches every node like an event, and takes effect unless another owner made a change that conflicts with it (the changes that took no effect are listed on this page).'
    return c.html(await membersPageOf(done === 'added' ? `Added: the change is published; it ${then}` : done === 'removed' ? `Removed: the change is published; it ${then}` : undefined))
  })
  const change = async (c: Context, what: 'added' | 'removed', run: () => Promise<void>): Promise<Response> => {
    try {
      await run()
    } catch (err) {
      if (!(err instanceof MemberChangeRefused)) throw err
      return c.html(await membersPageOf(undefined, err.message), err.status === 403 ? 403 : 400)
    }
    deps.log.info(`console membership change: ${what}`, { reason: 'console_members' })
    return c.redirect(`/console/members?done=${what}`, 303)
  }
  const form = async (c: Context): Promise<Record<string, string>> => {
    const body = await c.req.parseBody()
    return Object.fromEntries(Object.entries(body).flatMap(([k, v]) => (typeof v === 'string' && v.trim() !== '' ? [[k, v.trim()]] : [])))
  }
  const small = bodyLimit({ maxSize: 4096, onError: (c) => problem(c, 400, 'too_large', 'A console form is at most 4096 bytes') })
  app.post('/console/members', small, async (c) => {
    const f = await form(c)
    if (f.peer_id == null) return c.html(await membersPageOf(undefined, 'Adding a member needs its peer id.'), 400)
    return await change(c, 'added', async () => {
      await members.add({ peer_id: f.peer_id, name: f.name, role: f.role })
    })
  })
  app.post('/console/members/remove', small, async (c) => {
    const f = await form(c)
    if (f.peer_id == null) return c.html(await membersPageOf(undefined, 'Removing a member needs its peer id.'), 400)
    return await change(c, 'removed', async () => {
      await members.remove(f.peer_id)
    })
  })
  app.get('/console/storage', async (c) => c.html(storagePage(await deps.status(), deps.storage())))

  app.get('/console/api/overview', async (c) => c.json({ status: await deps.status(), series: deps.series() }))
  app.get('/console/api/stream', (c) => opened(streamEvents(c.req.raw, deps.stream)))

  app.post('/console/replay', small, async (c) => {
    const form = await c.req.parseBody()
    const eventId = typeof form.event_id === 'string' ? form.event_id : ''
    const producer = typeof form.producer === 'string' ? form.producer : ''
    if (eventId === '' || producer === '') return problem(c, 400, 'invalid', 'A replay needs the event_id and producer fields')
    if (deps.events.byId(eventId, producer) == null) return problem(c, 404, 'not_found', `No event ${eventId} of ${producer} in this node's events table`)
    const queued = deps.replay(eventId, producer)
    deps.log.info(`console replay of ${eventId} of ${producer}: ${queued} pair(s) queued`, { reason: 'console_replay' })
    return c.redirect(`/console/plugins?queued=${queued}`, 303)
  })
  app.post('/console/logout', (c) => {
    deps.sessions.end(getCookie(c, cookieName()))
    deleteCookie(c, cookieName(), { path: '/' })
    return c.html(loginNeeded('Logged out.'))
  })
  return app
}
