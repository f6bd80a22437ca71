import { Hono, type Context } from 'hono'
import { bearerAuth } from 'hono/bearer-auth'
import { bodyLimit } from 'hono/body-limit'
import { HTTPException } from 'hono/http-exception'
import * as v from 'valibot'
import { createHash, timingSafeEqual } from 'node:crypto'
import { ValidationError } from '../errors.ts'
import { issueLine, toIssues } from '../model/issues.ts'
import { IdempotencyKeyHeaderSchema, MAX_IDEMPOTENCY_KEY, type PublishResult } from '../model/publishRequest.ts'
import type { Log } from '../log/logger.ts'
import type { Metrics } from '../metrics/metrics.ts'
import { errorBody, errorResponse, STATUS_BY_ERROR } from './errors.ts'
import { openApiDocument } from './openapi.ts'
import { MAX_TYPES, readQuery } from './query.ts'
import { EventsQuerySchema, MAX_PAGE, NoQuerySchema, SchemaQuerySchema, SnapshotRequestSchema, type LimitsSchema, type SchemaInfoSchema } from './schemas.ts'
import { assertCursor, eventJson, STREAM_RETRY_MS, streamEvents, type StreamDeps } from './stream.ts'
import { mountMembers, type MembersDeps } from './members.ts'
import { jsonBody, NDJSON, readJson, unsupportedEncoding } from './mediaType.ts'
import { consoleApp, type ConsoleDeps } from './console/app.ts'
import { publishStream, STREAM_LINE_ROOM, type PublishStreamLimits } from './publishStream.ts'

/** The limits `GET /v1/limits` reports (and 413 answers carry). */
export type Limits = v.InferOutput<typeof LimitsSchema>

/** A type's payload schema, as `GET /v1/schemas` lists it. */
export type SchemaInfo = v.InferOutput<typeof SchemaInfoSchema>

/** What the loopback endpoint needs from the node. */
export interface HttpDeps {
  token: string
  maxBodySize: number
  maxBatch: number
  maxEventSize: number
  maxDepth: number
  /** a streaming publish ends after this long with nothing read or acknowledged (--http-idle-timeout) */
  idleTimeoutMs?: number
  log: Log
  ready: () => { ready: boolean; reason?: string }
  status: () => Promise<unknown>
  /** publishes one event; `key` is the request's Idempotency-Key */
  publish: (body: unknown, key?: string) => Promise<PublishResult>
  /** publishes several events in one commit, all or none */
  publishMany: (bodies: unknown[], key?: string) => Promise<PublishResult[]>
  /** writes signed snapshots of one plugin (or every plugin that takes part) into the outbox (for `POST /v1/snapshots`) */
  snapshot?: (plugin?: string) => Promise<unknown>
  /** the metrics registry, its database-backed gauges refreshed (for `/metrics`) */
  metrics?: () => Metrics
  /** what `/v1/stream` and `GET /v1/events` read */
  stream: StreamDeps
  /** the payload schemas of the loaded plugins' types, at their newest versions */
  schemas: () => SchemaInfo[]
  /**
   * @returns a type's payload schema at `version` (default the newest)
   * @throws NotFoundError when no loaded plugin declares that type or version
   */
  schema: (type: string, version?: number) => SchemaInfo
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

/** Every route and its methods: anything else on these paths is 405 with an Allow header. */
export const ROUTES: Record<string, string[]> = {
  '/healthz': ['GET'],
  '/readyz': ['GET'],
  '/status': ['GET'],
  '/metrics': ['GET'],
  '/v1/openapi.json': ['GET'],
  '/v1/limits': ['GET'],
  '/v1/status': ['GET'],
  '/v1/events': ['GET', 'POST'],
  '/v1/events/stream': ['POST'],
  '/v1/stream': ['GET'],
  '/v1/schemas': ['GET'],
  '/v1/schemas/:type': ['GET'],
  '/v1/snapshots': ['POST'],
  '/v1/members': ['GET', 'POST'],
  '/v1/members/:peer_id': ['DELETE']
}

/** @returns the request's Idempotency-Key header, checked */
function idempotencyKey(c: Context): string | undefined {
  const key = c.req.header('idempotency-key')
  if (key == null) return undefined
  const r = v.safeParse(IdempotencyKeyHeaderSchema, key)
  if (!r.success) throw new ValidationError(`Bad Idempotency-Key header: ${r.issues[0].message}`, toIssues(r.issues, 'Idempotency-Key'))
  return r.output
}

/**
 * Builds the loopback HTTP endpoint: open `/healthz`, `/readyz`, `/status`, `/metrics` and
 * `/v1/openapi.json`; the rest of `/v1/*` (publish, stream, events, schemas, status, limits) behind the
 * bearer token. Every error answer has one shape, `{ error: { code, message, issues } }`.
 *
 * @returns a hono app; serve its `fetch`
 */
export function createHttpApp(deps: HttpDeps): Hono {
  const app = new Hono()
  const limits: Limits = {
    max_body_bytes: deps.maxBodySize,
    max_batch: deps.maxBatch,
    max_event_bytes: deps.maxEventSize,
    // A payload's own levels: its event file (what max-depth bounds, and peers check) wraps it in one more.
    max_depth: deps.maxDepth - 1,
    max_idempotency_key: MAX_IDEMPOTENCY_KEY,
    max_page: MAX_PAGE,
    max_types: MAX_TYPES,
    stream_heartbeat_ms: deps.stream.heartbeatMs,
    stream_retry_ms: STREAM_RETRY_MS,
    publish_stream_line_bytes: deps.maxEventSize + STREAM_LINE_ROOM,
    publish_stream_window: deps.maxBatch
  }
  const streamLimits: PublishStreamLimits = {
    maxLineBytes: limits.publish_stream_line_bytes,
    windowLines: limits.publish_stream_window,
    windowBytes: Math.max(deps.maxBodySize, limits.publish_stream_line_bytes),
    idleTimeoutMs: deps.idleTimeoutMs ?? 30_000
  }

  app.onError((err, c) => {
    if (err instanceof HTTPException) return err.getResponse()
    const mapped = STATUS_BY_ERROR[err.name]
    if (mapped == null) {
      // Anything not thrown on purpose is a bug: its stack goes to the log, not to the client.
      deps.log.error(`${c.req.method} ${c.req.path} failed: ${err.stack ?? err.message}`, { route: c.req.path })
      return errorResponse(500, 'internal', `Internal error: ${err.message}; the node's log has the details`)
    }
    const e = err as Error & { issues?: []; reason?: string; eventId?: string }
    const extra: Record<string, unknown> = {}
    if (e.name === 'EventTooLargeError') extra.limits = limits
    if (e.eventId != null) extra.event_id = e.eventId
    return errorResponse(mapped.status, e.name === 'StaleCursorError' && e.reason != null ? e.reason : mapped.code, err.message, { issues: e.issues ?? [], extra })
  })
  app.notFound((c) => errorResponse(404, 'not_found', `No route ${c.req.method} ${c.req.path}: the routes are listed in /v1/openapi.json`))
  const { bound } = deps
  if (bound != null) {
    app.use('*', async (c, next) => {
      const host = c.req.header('host')
      if (!hostAllowed(host, bound())) {
        return errorResponse(421, 'misdirected_request', `Misdirected request: Host ${host ?? '(none)'} is not this loopback endpoint; use 127.0.0.1, localhost or [::1] with its port`)
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
  const document = openApiDocument()
  app.get('/v1/openapi.json', (c) => c.json(document))

  // Compared as SHA-256 digests in constant time, as hono does by default, but synchronously with the
  // runtime's native hash: the default's two async WebCrypto digests were 5 % of a publish.
  const tokenDigest = createHash('sha256').update(deps.token).digest()
  app.use(
    '/v1/*',
    bearerAuth({
      verifyToken: (token) => timingSafeEqual(createHash('sha256').update(token).digest(), tokenDigest),
      noAuthenticationHeader: { message: errorBody('unauthorized', 'Unauthorized: send Authorization: Bearer <the token in api.token>') },
      // A malformed header is a bad request (400, RFC 6750), not a wrong token.
      invalidAuthenticationHeader: {
        message: errorBody('invalid_request', 'Bad Authorization header: it must be Bearer <the token in api.token>', [
          { path: 'Authorization', message: 'must be Bearer <token>', code: 'invalid_header' }
        ])
      },
      invalidToken: { message: errorBody('unauthorized', 'Unauthorized: the token does not match api.token') }
    })
  )
  app.post(
    '/v1/events',
    jsonBody,
    bodyLimit({
      maxSize: deps.maxBodySize,
      onError: () => errorResponse(413, 'too_large', `Payload too large: the body is over ${deps.maxBodySize} bytes (max-body-size); split the batch`, { extra: { limits } })
    }),
    async (c) => {
      const key = idempotencyKey(c)
      const body = await readJson(c)
      // An array publishes a batch: one commit, one result per event in order; all or none.
      const results = Array.isArray(body) ? await deps.publishMany(body, key) : [await deps.publish(body, key)]
      const replayed = results.every((r) => r.replayed)
      if (replayed) c.header('idempotent-replayed', 'true')
      return c.json(Array.isArray(body) ? results : results[0], replayed ? 200 : 201)
    }
  )
  // A streaming publish: NDJSON in, one acknowledgement per line out, each once its event is durable.
  app.post('/v1/events/stream', (c) => {
    const encoded = unsupportedEncoding(c)
    if (encoded != null) return encoded
    const type = c.req.header('content-type') ?? ''
    if (!NDJSON.test(type)) {
      return errorResponse(415, 'unsupported_media_type', `Unsupported media type ${type === '' ? '(none)' : type}: send one publish request per line with Content-Type: application/x-ndjson`, {
        headers: { 'accept-post': 'application/x-ndjson' }
      })
    }
    if (c.req.header('idempotency-key') != null) {
      throw new ValidationError("Bad Idempotency-Key header: a streaming publish takes its keys per line, as each line's event_id", [
        { path: 'Idempotency-Key', message: 'is not taken by a streaming publish; give each line an event_id', code: 'invalid_header' }
      ])
    }
    return publishStream(c.req.raw.body, async (input) => await deps.publish(input), streamLimits, deps.log, limits)
  })
  app.get('/v1/events', (c) => {
    const q = readQuery(c.req.url, EventsQuerySchema, Object.keys(EventsQuerySchema.entries))
    const { events, watermark } = deps.stream
    const after = Number(q.after ?? 0)
    assertCursor(events, after, q.cursor_space)
    const limit = Number(q.limit ?? 100)
    if (limit > MAX_PAGE) throw new ValidationError(`Bad query: limit ${limit} is over ${MAX_PAGE}`, [{ path: 'limit', message: `is over ${MAX_PAGE}`, code: 'max_value' }])
    const rows = events.list({ after, upTo: watermark(), types: q.type, producer: q.producer, limit: limit + 1 })
    const page = rows.slice(0, limit)
    return c.json({ cursor_space: events.cursorSpace(), events: page.map(eventJson), next_after: page.at(-1)?.cursor ?? after, has_more: rows.length > limit })
  })
  app.get('/v1/stream', (c) => streamEvents(c.req.raw, deps.stream))
  app.get('/v1/limits', (c) => {
    readQuery(c.req.url, NoQuerySchema, [])
    return c.json(limits)
  })
  app.get('/v1/status', async (c) => {
    readQuery(c.req.url, NoQuerySchema, [])
    return c.json({ running: true, ...((await deps.status()) as object) })
  })
  app.get('/v1/schemas', (c) => {
    readQuery(c.req.url, NoQuerySchema, [])
    return c.json({ schemas: deps.schemas() })
  })
  app.get('/v1/schemas/:type', (c) => {
    const q = readQuery(c.req.url, SchemaQuerySchema, ['version'])
    return c.json(deps.schema(c.req.param('type'), q.version == null ? undefined : Number(q.version)))
  })

  const { snapshot } = deps
  if (snapshot != null) {
    app.post(
      '/v1/snapshots',
      jsonBody,
      bodyLimit({ maxSize: 4096, onError: () => errorResponse(413, 'too_large', 'Payload too large: a snapshot request is at most 4096 bytes', { extra: { limits } }) }),
      async (c) => {
        const r = v.safeParse(SnapshotRequestSchema, await readJson(c, {}))
        if (!r.success) throw new ValidationError(`Cannot write snapshots: ${toIssues(r.issues).map(issueLine).join('; ')}`, toIssues(r.issues))
        return c.json(await snapshot(r.output.plugin))
      }
    )
  }
  if (deps.members != null) mountMembers(app, deps.members, limits)

  const { metrics } = deps
  if (metrics != null) {
    app.get('/metrics', async (c) => {
      const m = metrics()
      return c.body(await m.text(), 200, { 'content-type': m.contentType })
    })
  }
  if (deps.console != null) {
    // The console calls this endpoint's own /v1 routes (the Members page: /v1/members) as the CLI does.
    const api = async (path: string, init: RequestInit = {}): Promise<Response> =>
      await app.request(path, { ...init, headers: { ...(init.headers as Record<string, string> | undefined), host: 'localhost', authorization: `Bearer ${deps.token}` } })
    app.route('/', consoleApp(deps.console, { ownHost: (host) => bound == null || hostAllowed(host, bound()), api }))
  }
  for (const [path, methods] of Object.entries(ROUTES)) {
    app.all(path, (c) => errorResponse(405, 'method_not_allowed', `Method ${c.req.method} is not allowed on ${c.req.path}: use ${methods.join(' or ')}`, { headers: { allow: methods.join(', ') } }))
  }
  return app
}
