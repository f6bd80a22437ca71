import { Hono } from 'hono'
import { bearerAuth } from 'hono/bearer-auth'
import { bodyLimit } from 'hono/body-limit'
import { HTTPException } from 'hono/http-exception'
import { createHash, timingSafeEqual } from 'node:crypto'
import type { PublishResult } from '../model/publishRequest.ts'
import type { Log } from '../log/logger.ts'
import type { Metrics } from '../metrics/metrics.ts'
import { mountMembers, type MembersDeps } from './members.ts'
import { streamEvents, type StreamDeps } from './stream.ts'
import { consoleApp, type ConsoleDeps } from './console/app.ts'

/** What the loopback endpoint needs from the node. */
export interface HttpDeps {
  token: string
  maxBodySize: number
  log: Log
  ready: () => { ready: boolean; reason?: string }
  status: () => Promise<unknown>
  publish: (body: unknown) => Promise<PublishResult>
  /** publishes several events in one commit, all or none */
  publishMany: (bodies: unknown[]) => Promise<PublishResult[]>
  /** writes signed snapshots of one plugin (or every plugin that takes part) into the outbox (for `POST /v1/snapshots`) */
  snapshot?: (plugin?: string) => Promise<unknown>
  /** the metrics registry, its database-backed gauges refreshed (for `/metrics`) */
  metrics?: () => Metrics
  /** what `/v1/stream` reads */
  stream?: StreamDeps
  /**
   * The port the endpoint listens on (once known) and, with --force-http, the address it was bound to on
   * purpose: requests whose Host header names anything else are refused.
   */
  bound?: () => { port?: number; host?: string }
  /** `/v1/members`: list, add and remove members */
  members?: MembersDeps
  /** the browser console at `/` (see consoleApp); absent, `/` is not served */
  console?: ConsoleDeps
}

const LOOPBACK_HOST = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|\[::1\])$/i

/**
 * Whether a Host header names this endpoint: a loopback name or address (or the address bound with
 * --force-http), with the listening port or none. A page the operator opens can resolve its own name to
 * 127.0.0.1 (DNS rebinding), but its requests still carry that name, so they are refused.
 *
 * @returns true when the request may be served
 */
export function hostAllowed(header: string | undefined, bound: { port?: number; host?: string }): boolean {
  if (header == null) return false
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d{1,5}))?$/.exec(header.trim())
  if (m == null) return false
  const [, name, port] = m
  if (port != null && bound.port != null && Number(port) !== bound.port) return false
  if (LOOPBACK_HOST.test(name)) return true
  if (bound.host == null) return false
  const host = bound.host.includes(':') ? `[${bound.host}]` : bound.host
  return name.toLowerCase() === host.toLowerCase()
}

/** Maps an error's name to the HTTP status the endpoint answers with. */
const STATUS_BY_ERROR: Record<string, 400 | 403 | 404 | 409 | 413 | 503> = {
  ValidationError: 400,
  NotOwnerError: 403,
  EventTooLargeError: 413,
  NotStartedError: 503,
  CommitFailedError: 503,
  ClockSkewError: 503
}

/**
 * Builds the loopback HTTP endpoint: open `/healthz`, `/readyz`, `/status`, `/metrics`; `/v1/*` (publish, stream)
 * behind the bearer token.
 *
 * @returns a hono app; serve its `fetch`
 */
export function createHttpApp(deps: HttpDeps): Hono {
  const app = new Hono()

  app.onError((err, c) => {
    if (err instanceof HTTPException) return err.getResponse()
    const status = STATUS_BY_ERROR[err.name]
    if (status == null) {
      // Anything not thrown on purpose is a bug: its stack goes to the log, not to the client.
      deps.log.error(`${c.req.method} ${c.req.path} failed: ${err.stack ?? err.message}`, { route: c.req.path })
      return c.json({ error: `Internal error: ${err.message}; the node's log has the details` }, 500)
    }
    const body: Record<string, unknown> = { error: err.message }
    if (Array.isArray((err as { issues?: unknown }).issues)) body.issues = (err as unknown as { issues: unknown }).issues
    return c.json(body, status)
  })
  app.notFound((c) => c.json({ error: `No route ${c.req.method} ${c.req.path}` }, 404))
  const { bound } = deps
  if (bound != null) {
    app.use('*', async (c, next) => {
      const host = c.req.header('host')
      if (!hostAllowed(host, bound())) {
        return c.json({ error: `Misdirected request: Host ${host ?? '(none)'} is not this loopback endpoint; use 127.0.0.1, localhost or [::1] with its port` }, 421)
      }
      await next()
    })
  }

  app.get('/healthz', (c) => c.json({ status: 'ok' }))
  app.get('/readyz', (c) => {
    const r = deps.ready()
    return c.json({ status: r.ready ? 'ready' : 'not ready', reason: r.reason }, r.ready ? 200 : 503)
  })
  app.get('/status', async (c) => c.json((await deps.status()) as object))

  // Compared as SHA-256 digests in constant time, as hono does by default, but synchronously with the
  // runtime's native hash: the default's two async WebCrypto digests were 5 % of a publish.
  const tokenDigest = createHash('sha256').update(deps.token).digest()
  app.use(
    '/v1/*',
    bearerAuth({
      verifyToken: (token) => timingSafeEqual(createHash('sha256').update(token).digest(), tokenDigest),
      noAuthenticationHeader: { message: { error: 'Unauthorized: send Authorization: Bearer <the token in api.token>' } },
      invalidAuthenticationHeader: { message: { error: 'Unauthorized: the Authorization header must be Bearer <token>' } },
      invalidToken: { message: { error: 'Unauthorized: the token does not match api.token' } }
    })
  )
  app.post(
    '/v1/events',
    bodyLimit({
      maxSize: deps.maxBodySize,
      onError: (c) => c.json({ error: `Payload too large: the body is over ${deps.maxBodySize} bytes` }, 413)
    }),
    async (c) => {
      let body: unknown
      try {
        body = JSON.parse(await c.req.text())
      } catch (err) {
        return c.json({ error: `Malformed JSON: ${(err as Error).message}` }, 400)
      }
      // An array publishes a batch: one commit, one result per event in order; all or none.
      return c.json(Array.isArray(body) ? await deps.publishMany(body) : await deps.publish(body))
    }
  )
  const { snapshot } = deps
  if (snapshot != null) {
    app.post('/v1/snapshots', async (c) => {
      let body: unknown
      try {
        body = JSON.parse((await c.req.text()) || '{}')
      } catch (err) {
        return c.json({ error: `Malformed JSON: ${(err as Error).message}` }, 400)
      }
      const plugin = (body as { plugin?: unknown } | null)?.plugin
      if (plugin != null && typeof plugin !== 'string') return c.json({ error: 'Invalid body: plugin must be a plugin name' }, 400)
      return c.json(await snapshot(plugin ?? undefined))
    })
  }
  const { metrics, stream } = deps
  if (metrics != null) {
    app.get('/metrics', async (c) => {
      const m = metrics()
      return c.body(await m.text(), 200, { 'content-type': m.contentType })
    })
  }
  if (stream != null) app.get('/v1/stream', (c) => streamEvents(c, stream))
  if (deps.members != null) mountMembers(app, deps.members)
  if (deps.console != null) {
    // The console calls this endpoint's own /v1 routes (the Members page: /v1/members) as the CLI does.
    const api = async (path: string, init: RequestInit = {}): Promise<Response> =>
      await app.request(path, { ...init, headers: { ...(init.headers as Record<string, string> | undefined), host: 'localhost', authorization: `Bearer ${deps.token}` } })
    app.route('/', consoleApp(deps.console, { ownHost: (host) => bound == null || hostAllowed(host, bound()), api }))
  }
  return app
}
