import { CairnApiError, CairnUnavailableError, type ApiIssue } from './errors.ts'
import { discover, type Endpoint } from './discover.ts'
import { readSse } from './sse.ts'

/** One event to publish: `event_id` is its idempotency key (well-formed text without control characters, up to 256 UTF-16 code units). */
export interface PublishInput {
  type: string
  payload: unknown
  version?: number
  event_id?: string
  actor?: string
  correlation_id?: string
  causation_id?: string
}

/** What the node answers a publish with, once the event is durable. */
export interface PublishResult {
  event_id: string
  seq: number
  cid: string
  /** true when an earlier request with the same key published it: nothing new was published */
  replayed: boolean
}

/** An event as the node shows it: the envelope plus its local cursor and file CID. */
export interface CairnEvent<P = unknown> {
  event_id: string
  type: string
  version: number
  producer: string
  seq: number
  hlc: string
  occurred_at: string
  actor?: string
  correlation_id?: string
  causation_id?: string
  payload: P
  cursor: number
  cid: string
}

/** A page of `GET /v1/events`. */
export interface EventsPage<P = unknown> {
  cursor_space: string
  events: Array<CairnEvent<P>>
  /** pass as `after` for the next page */
  next_after: number
  has_more: boolean
}

/** The node's limits (`GET /v1/limits`). */
export interface Limits {
  max_body_bytes: number
  max_batch: number
  max_event_bytes: number
  max_depth: number
  max_idempotency_key: number
  max_page: number
  max_types: number
  stream_heartbeat_ms: number
  stream_retry_ms: number
  /** the longest line of a streaming publish */
  publish_stream_line_bytes: number
  /** the most lines of a streaming publish in flight before their acknowledgements are taken */
  publish_stream_window: number
}

/** What `publishStream` yields for each event, in order: its result once durable, or why the node refused it. */
export type PublishStreamItem = { index: number; event: PublishInput; result: PublishResult; error?: undefined } | { index: number; event: PublishInput; result?: undefined; error: CairnApiError }

/** What `subscribe` yields: an event (with the cursor to store), or the signal that the backlog is delivered. */
export type StreamItem<P = unknown> = { kind: 'event'; event: CairnEvent<P>; cursor: number; cursorSpace: string } | { kind: 'caught-up'; cursor: number; cursorSpace: string }

/** How a client finds the node and retries. */
export interface ClientOptions {
  /** the node's data directory: the endpoint and token are read from its node.json and api.token (again after each failure) */
  dataDir?: string
  /** the endpoint, when not found through a data directory */
  baseUrl?: string
  token?: string
  /**
   * How long a call keeps retrying a node it cannot reach or that answers 5xx (not running, restarting, no
   * readable node.json), counted from the first failure in a row; then it throws the last error
   * (CairnUnavailableError, or the CairnApiError of the last 5xx). Default 30 s, enough for a restart.
   */
  retryForMs?: number
  /** the first retry's delay; each further one doubles it, up to maxDelayMs (default 100 ms) */
  minDelayMs?: number
  /** the longest delay between attempts and between stream reconnections (default 5 s) */
  maxDelayMs?: number
  /** a request that gets no answer for this long is retried (default 30 s) */
  timeoutMs?: number
}

/** Options of one call. */
export interface CallOptions {
  signal?: AbortSignal
}

/** How a subscription starts. */
export interface SubscribeOptions extends CallOptions {
  /** only these event types */
  types?: readonly string[]
  /** resume after this cursor (the last one handled); default 0, the start */
  after?: number
  /** the cursor space `after` belongs to: the node refuses to resume in another one (its database was reset) */
  cursorSpace?: string
}

interface ErrorBody {
  error?: { code?: string; message?: string; issues?: ApiIssue[]; event_id?: string; status?: number }
}

/** @returns a delay with full jitter, so that many clients do not reconnect in step */
function backoff(attempt: number, min: number, max: number): number {
  return Math.random() * Math.min(max, min * 2 ** attempt)
}

/**
 * The retry budget of one run of failures: a time, not a count, so that a node restart of a few seconds
 * is waited out whatever the backoff's jitter drew.
 */
class RetryBudget {
  private failures = 0
  private since = 0
  constructor(private readonly options: { retryForMs: number; minDelayMs: number; maxDelayMs: number }) {}

  /** Forgets the failures: the call made progress. */
  reset(): void {
    this.failures = 0
  }

  /**
   * Counts a failure and waits before the next attempt.
   *
   * @throws `last` when the budget is spent (retryForMs since the first failure of this run)
   */
  async failed(last: Error, signal?: AbortSignal): Promise<void> {
    if (this.failures === 0) this.since = Date.now()
    this.failures++
    const left = this.since + this.options.retryForMs - Date.now()
    if (left <= 0) throw last
    await sleep(Math.min(left, backoff(this.failures, this.options.minDelayMs, this.options.maxDelayMs)), signal)
  }
}

/**
 * A publish stream the node ended with every event acknowledged after at least this long is its idle timeout
 * (`--http-idle-timeout`, at least 1 s), not a failure; one ended sooner counts as one.
 */
const QUIET_CLOSE_MS = 1000

/** Resolves after `ms`, or rejects when `signal` aborts. */
async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted()
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(signal?.reason)
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** @returns the error a refused request stands for */
async function apiError(res: Response): Promise<CairnApiError> {
  const text = await res.text()
  let body: ErrorBody = {}
  try {
    body = JSON.parse(text) as ErrorBody
  } catch {}
  const e = body.error
  return new CairnApiError(res.status, e?.code ?? `http_${res.status}`, e?.message ?? `HTTP ${res.status}: ${text.slice(0, 200)}`, e?.issues ?? [], e?.event_id)
}

/** @returns the lines of an NDJSON body as they arrive (blank ones skipped) */
async function* ndjsonLines(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder()
  let rest = ''
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    rest += decoder.decode(chunk, { stream: true })
    let nl = rest.indexOf('\n')
    while (nl !== -1) {
      const line = rest.slice(0, nl).trim()
      rest = rest.slice(nl + 1)
      if (line !== '') yield line
      nl = rest.indexOf('\n')
    }
  }
  if (rest.trim() !== '') yield rest.trim()
}

/** An index at the start of a path (`[3].payload`, `event [3]`, `of [0]`): a batch request's own numbering. */
const BATCH_INDEX = /(^|[\s(])\[(\d+)\](?=$|[.:;,\s)])/g

/**
 * @returns the error of one request of `publishBatch` in the caller's terms: the indexes in its issue paths
 * and message shifted by `offset` (the events sent before this request), and `published` set to what the
 * earlier requests published
 */
function batchError(err: unknown, offset: number, size: number, published: PublishResult[]): unknown {
  const shift = (text: string): string => text.replace(BATCH_INDEX, (all, before: string, i: string) => (Number(i) < size ? `${before}[${Number(i) + offset}]` : all))
  let out = err
  if (err instanceof CairnApiError && offset > 0) {
    const issues = err.issues.map((i) => ({ ...i, path: shift(i.path), message: shift(i.message) }))
    const message = `${shift(err.message)} (the ${offset} events before it are published: each request of a publishBatch is one commit)`
    out = new CairnApiError(err.status, err.code, message, issues, err.eventId)
  }
  if (out instanceof CairnApiError || out instanceof CairnUnavailableError) out.published = published
  return out
}

/**
 * @returns the refusal of a `publishBatch` call whose events repeat an idempotency key (an event's own
 * `event_id`, or `KEY#i` the call gives an event without one), as the node words it for a repeat in one request
 * (400 `invalid_request`, an issue `duplicate_key` per repeat naming both indexes); undefined when none repeats.
 * Checked over the whole call: split over several requests, a repeat would be a replay or a 409 of a later one.
 */
function repeatedKeys(events: readonly PublishInput[], keys: readonly string[]): CairnApiError | undefined {
  const seen = new Map<string, number>()
  const issues: ApiIssue[] = []
  for (const [i, key] of keys.entries()) {
    const first = seen.get(key)
    if (first == null) {
      seen.set(key, i)
      continue
    }
    const own = events[i].event_id != null
    issues.push({
      path: own ? `[${i}].event_id` : `[${i}]`,
      message: `repeats the idempotency key of [${first}]${own ? '' : ` (${JSON.stringify(key)}: the call's idempotencyKey and its index)`}`,
      code: 'duplicate_key'
    })
  }
  if (issues.length === 0) return undefined
  const error = new CairnApiError(400, 'invalid_request', `Cannot publish: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}; a batch publishes each key once`, issues)
  error.published = []
  return error
}

/** A client-side key: random, so that its retries are recognised and nothing else is. */
function newKey(): string {
  return `client-${crypto.randomUUID()}`
}

/**
 * A typed client of a cairn node's loopback API, for backends on Node 20+, Bun and Deno (only `fetch`,
 * web streams and node:fs for discovery). Publishes are retried on network errors and 5xx with the same
 * idempotency key, so a retry never publishes twice; `subscribe` follows the stream across restarts of
 * the node and of the consumer.
 *
 * @example
 * ```ts
 * const cairn = new CairnClient({ dataDir: '/var/lib/cairn' })
 * await cairn.publish({ type: 'order.placed', payload: { id: 123 }, event_id: 'order-123' })
 * for await (const item of cairn.subscribe({ types: ['order.placed'], after: 0 })) {
 *   if (item.kind === 'event') console.log(item.cursor, item.event.payload)
 * }
 * ```
 */
export class CairnClient {
  private readonly options: Required<Pick<ClientOptions, 'retryForMs' | 'minDelayMs' | 'maxDelayMs' | 'timeoutMs'>> & ClientOptions
  private limitsCache?: Limits

  constructor(options: ClientOptions) {
    if (options.dataDir == null && (options.baseUrl == null || options.token == null)) {
      throw new TypeError('CairnClient needs dataDir, or baseUrl and token')
    }
    // An option given as undefined (an unset environment variable) takes its default; NaN, a negative or an
    // infinite time is refused, since it would retry without a pause or for ever.
    const time = (name: 'retryForMs' | 'minDelayMs' | 'maxDelayMs' | 'timeoutMs', fallback: number): number => {
      const value = options[name]
      if (value == null) return fallback
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new TypeError(`CairnClient option ${name} must be a number of milliseconds of at least 0, not ${String(value)}`)
      return value
    }
    this.options = {
      ...options,
      retryForMs: time('retryForMs', 30_000),
      minDelayMs: time('minDelayMs', 100),
      maxDelayMs: time('maxDelayMs', 5000),
      timeoutMs: time('timeoutMs', 30_000)
    }
  }

  /** @returns the endpoint: given, or read from the data directory now (a restarted node may have written a new one) */
  async endpoint(): Promise<Endpoint> {
    const { baseUrl, token, dataDir } = this.options
    if (baseUrl != null && token != null) return { baseUrl: baseUrl.replace(/\/$/, ''), token }
    return await discover(dataDir!)
  }

  /**
   * Sends one request, retried on network errors, 5xx and a node not found, with backoff, for `retryForMs`.
   *
   * @returns the response of a 2xx
   * @throws CairnApiError for a 4xx (or the last 5xx); CairnUnavailableError when the node could not be reached for `retryForMs`
   */
  private async request(method: string, path: string, body: unknown, headers: Record<string, string>, options: CallOptions = {}): Promise<Response> {
    const { timeoutMs } = this.options
    const budget = new RetryBudget(this.options)
    for (;;) {
      options.signal?.throwIfAborted()
      let res: Response
      try {
        const ep = await this.endpoint()
        res = await fetch(`${ep.baseUrl}${path}`, {
          method,
          headers: { authorization: `Bearer ${ep.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: options.signal == null ? AbortSignal.timeout(timeoutMs) : AbortSignal.any([options.signal, AbortSignal.timeout(timeoutMs)])
        })
      } catch (err) {
        if (options.signal?.aborted === true) throw err
        await budget.failed(err instanceof CairnUnavailableError ? err : new CairnUnavailableError(`Cannot reach the node: ${(err as Error).message}`, { cause: err }), options.signal)
        continue
      }
      if (res.ok) return res
      const error = await apiError(res)
      if (res.status < 500) throw error
      await budget.failed(error, options.signal)
    }
  }

  /** @returns the node's limits (asked once, then remembered) */
  async limits(options: CallOptions = {}): Promise<Limits> {
    this.limitsCache ??= (await (await this.request('GET', '/v1/limits', undefined, {}, options)).json()) as Limits
    return this.limitsCache
  }

  /**
   * Publishes one event, retried with the same idempotency key until the node answers: `event_id` when
   * given, else `options.idempotencyKey`, else a random key of this call.
   *
   * @returns the result once durable (`replayed` when the key was published before)
   * @throws CairnApiError with `issues` when the node refuses it (409 `idempotency_key_reused` for a key used with another event)
   */
  async publish(event: PublishInput, options: CallOptions & { idempotencyKey?: string } = {}): Promise<PublishResult> {
    const key = event.event_id ?? options.idempotencyKey ?? newKey()
    const res = await this.request('POST', '/v1/events', { ...event, event_id: key }, {}, options)
    return (await res.json()) as PublishResult
  }

  /**
   * Publishes events in as few requests as the node's limits allow (by count, `max_batch`, and by bytes,
   * `max_body_bytes`). Each request is one commit, all of it or none of it; so a call with more events than
   * fit one request is several commits, and a refused request leaves those before it published. An event
   * without `event_id` gets the key `KEY#i` (i its index in `events`), KEY being `options.idempotencyKey`
   * or a random key of this call, so a retried call with the same key publishes nothing twice. A key that
   * repeats in `events` is refused before anything is sent, however the call would be split, as the node
   * refuses it within one request (400 `invalid_request`, an issue `duplicate_key` naming both indexes). An
   * empty array is sent as it is: the node refuses it (400 `invalid_request`, its issue `empty_batch`), as it does over plain HTTP.
   *
   * @returns one result per event, in order
   * @throws CairnApiError for a repeated key (nothing published) or a refused request, its issue paths and message naming indexes of `events`
   * (`[5100].payload.invitee`), and `published` the results of the events the earlier requests published
   * (the first `published.length` of `events`; none after them); CairnUnavailableError (with `published`
   * too) when the node could not be reached for `retryForMs`
   */
  async publishBatch(events: readonly PublishInput[], options: CallOptions & { idempotencyKey?: string } = {}): Promise<PublishResult[]> {
    const limits = await this.limits(options)
    const key = options.idempotencyKey ?? newKey()
    const bodies = events.map((e, i) => ({ ...e, event_id: e.event_id ?? `${key}#${i}` }))
    const repeated = repeatedKeys(
      events,
      bodies.map((b) => b.event_id)
    )
    if (repeated != null) throw repeated
    const results: PublishResult[] = []
    let chunk: unknown[] = []
    let bytes = 2
    const send = async (): Promise<void> => {
      // The node answers for the chunk's own indexes: shifted back to the caller's by the events before it.
      const offset = results.length
      let res: Response
      try {
        res = await this.request('POST', '/v1/events', chunk, {}, options)
      } catch (err) {
        throw batchError(err, offset, chunk.length, [...results])
      }
      results.push(...((await res.json()) as PublishResult[]))
      chunk = []
      bytes = 2
    }
    if (bodies.length === 0) {
      await send()
      return results
    }
    const encoder = new TextEncoder()
    for (const body of bodies) {
      const size = encoder.encode(JSON.stringify(body)).length + 1
      if (chunk.length >= limits.max_batch || (chunk.length > 0 && bytes + size > limits.max_body_bytes)) await send()
      chunk.push(body)
      bytes += size
    }
    if (chunk.length > 0) await send()
    return results
  }

  /**
   * Publishes a stream of events over one long request (`POST /v1/events/stream`), each line committed
   * with whatever else arrives meanwhile, and yields one item per event, in order, once it is durable (or
   * refused: `error`, the stream going on). At most `publish_stream_window` events are read from `events`
   * ahead of their acknowledgements. An event without `event_id` gets the key `KEY#i` (i its index),
   * KEY being `options.idempotencyKey` or a random key of this call; when the connection breaks, the
   * events not yet acknowledged are sent again under the same keys on a new one (with backoff, for up to
   * `retryForMs` without an acknowledgement), so none is published twice.
   *
   * @returns an async iterator of `{ index, event, result }` or `{ index, event, error }`
   * @throws CairnApiError when the node refuses the stream itself; CairnUnavailableError when it cannot be reached for `retryForMs`
   */
  async *publishStream(events: Iterable<PublishInput> | AsyncIterable<PublishInput>, options: CallOptions & { idempotencyKey?: string } = {}): AsyncGenerator<PublishStreamItem> {
    const limits = await this.limits(options)
    const window = Math.max(1, Number.isSafeInteger(limits.publish_stream_window) ? limits.publish_stream_window : limits.max_batch)
    const key = options.idempotencyKey ?? newKey()
    const source: Iterator<PublishInput> | AsyncIterator<PublishInput> =
      Symbol.asyncIterator in events ? (events as AsyncIterable<PublishInput>)[Symbol.asyncIterator]() : (events as Iterable<PublishInput>)[Symbol.iterator]()
    /** events sent (or to send again) and not yet acknowledged, oldest first */
    const pending: Array<{ index: number; event: PublishInput; line: string }> = []
    let next = 0
    let sourceDone = false
    let sourceError: unknown
    let room: (() => void) | undefined
    /**
     * the source's next value being waited for: one read at a time, shared by the connections, so that a value a
     * closed connection's pull waited for is taken once, and sent by the connection after it at once
     */
    let reading: Promise<IteratorResult<PublishInput>> | undefined
    const encoder = new TextEncoder()
    const budget = new RetryBudget(this.options)
    try {
      while (!sourceDone || pending.length > 0) {
        options.signal?.throwIfAborted()
        if (sourceError != null) throw sourceError
        // This connection sends the events still unacknowledged first, then new ones while there is room. An
        // event read for a connection that ended meanwhile (its pull was waiting on the source) joins `pending`
        // unsent, and the connection after it sends it, in order: each connection sends every entry of `pending`
        // past those it sent, so that the acknowledgements, matched to `pending` in order, match the events.
        let sentHere = 0
        let closed = false
        const sendUnsent = (c: ReadableStreamDefaultController<Uint8Array>): void => {
          if (sentHere >= pending.length) return
          c.enqueue(
            encoder.encode(
              pending
                .slice(sentHere)
                .map((p) => p.line)
                .join('')
            )
          )
          sentHere = pending.length
        }
        const body = new ReadableStream<Uint8Array>({
          pull: async (c) => {
            if (sentHere < pending.length) {
              sendUnsent(c)
              return
            }
            while (pending.length >= window && !closed) await new Promise<void>((resolve) => (room = resolve))
            if (closed) return
            if (sourceDone) {
              c.close()
              return
            }
            reading ??= (async () => await source.next())()
            const read = reading
            let r: IteratorResult<PublishInput>
            try {
              r = await read
            } catch (err) {
              if (reading === read) {
                reading = undefined
                sourceError = err
                sourceDone = true
              }
              if (!closed) c.error(err)
              return
            }
            // The first pull to wake takes the value; the others find it taken.
            if (reading === read) {
              reading = undefined
              if (r.done === true) sourceDone = true
              else {
                const event = r.value
                const index = next++
                const line = `${JSON.stringify({ ...event, event_id: event.event_id ?? `${key}#${index}` })}\n`
                pending.push({ index, event, line })
              }
            }
            if (closed) return
            if (sentHere < pending.length) sendUnsent(c)
            else if (sourceDone) c.close()
          },
          cancel: () => {
            closed = true
            room?.()
          }
        })
        let res: Response
        try {
          const ep = await this.endpoint()
          res = await fetch(`${ep.baseUrl}/v1/events/stream`, {
            method: 'POST',
            headers: { authorization: `Bearer ${ep.token}`, 'content-type': 'application/x-ndjson' },
            body,
            // A streamed request body needs half duplex in Node's fetch (and is the only mode of Bun's and Deno's).
            duplex: 'half',
            signal: options.signal
          } as RequestInit)
        } catch (err) {
          if (options.signal?.aborted === true || sourceError != null) throw sourceError ?? err
          await budget.failed(err instanceof CairnUnavailableError ? err : new CairnUnavailableError(`Cannot reach the node: ${(err as Error).message}`, { cause: err }), options.signal)
          continue
        }
        if (!res.ok) {
          const error = await apiError(res)
          if (res.status < 500) throw error
          await budget.failed(error, options.signal)
          continue
        }
        const openedAt = Date.now()
        let last: Error = new CairnUnavailableError('The publish stream ended before every event was acknowledged')
        let broke = false
        try {
          for await (const text of ndjsonLines(res.body!)) {
            const ack = JSON.parse(text) as PublishResult & ErrorBody & { line?: number }
            const p = pending.shift()
            if (p == null) continue
            sentHere = Math.max(0, sentHere - 1)
            budget.reset()
            room?.()
            room = undefined
            if (ack.error != null) {
              const e = ack.error
              yield { index: p.index, event: p.event, error: new CairnApiError(e.status ?? 400, e.code ?? 'invalid_request', e.message ?? 'refused', e.issues ?? [], e.event_id) }
            } else {
              yield { index: p.index, event: p.event, result: { event_id: ack.event_id, seq: ack.seq, cid: ack.cid, replayed: ack.replayed } }
            }
          }
        } catch (err) {
          if (options.signal?.aborted === true || sourceError != null) throw sourceError ?? err
          last = new CairnUnavailableError(`The publish stream broke: ${(err as Error).message}`, { cause: err })
          broke = true
        } finally {
          closed = true
          room?.()
        }
        if (sourceError != null) throw sourceError
        if (!broke && pending.length === 0 && !sourceDone && Date.now() - openedAt >= QUIET_CLOSE_MS) {
          // The node ended a stream with every event acknowledged while the source was quiet (its idle timeout):
          // no failure; a new connection waits for the source's next event.
          budget.reset()
          await sleep(this.options.minDelayMs, options.signal)
          continue
        }
        if (pending.length > 0 || !sourceDone) await budget.failed(last, options.signal)
      }
      if (sourceError != null) throw sourceError
    } finally {
      // Ended early (a break, an abort, an error): the source is told, without waiting for a read it may still owe.
      if (!sourceDone) {
        try {
          void Promise.resolve(source.return?.()).catch(() => {})
        } catch {
          // a source whose return throws has ended all the same
        }
      }
    }
  }

  /**
   * Reads a page of the events every plugin on the node has processed, in cursor order.
   *
   * @returns the page; `next_after` is the `after` of the next one
   * @throws CairnApiError for a bad filter or a cursor the node cannot resume from
   */
  async events<P = unknown>(query: { after?: number; types?: readonly string[]; producer?: string; limit?: number; cursorSpace?: string } = {}, options: CallOptions = {}): Promise<EventsPage<P>> {
    const q = new URLSearchParams()
    if (query.after != null) q.set('after', String(query.after))
    if (query.types != null) q.set('type', query.types.join(','))
    if (query.producer != null) q.set('producer', query.producer)
    if (query.limit != null) q.set('limit', String(query.limit))
    if (query.cursorSpace != null) q.set('cursor_space', query.cursorSpace)
    return (await (await this.request('GET', `/v1/events?${q.toString()}`, undefined, {}, options)).json()) as EventsPage<P>
  }

  /**
   * Follows the node's event stream from `after`, reconnecting with backoff when the connection breaks or
   * the node restarts, and resuming after the last event yielded: no gap, no repeat. Store `cursor` and
   * `cursorSpace` with what you do for each event, and pass them back as `after` and `cursorSpace`.
   *
   * @returns an async iterator of events and `caught-up` signals (one per connection, once its backlog is delivered)
   * @throws CairnApiError when the node refuses the subscription (a bad type, a cursor it cannot resume from)
   */
  async *subscribe<P = unknown>(options: SubscribeOptions = {}): AsyncGenerator<StreamItem<P>> {
    const { minDelayMs, maxDelayMs } = this.options
    let after = options.after ?? 0
    let cursorSpace = options.cursorSpace
    let failures = 0
    let retryMs: number | undefined
    // Until a `ready` event names the heartbeat: the node's default 15 s, three times, and a second.
    let quietMs = 46_000
    for (;;) {
      options.signal?.throwIfAborted()
      // The first reconnection waits what the server asked for (retry:), the next ones back off.
      if (failures > 0) await sleep(failures === 1 && retryMs != null ? retryMs : backoff(failures, minDelayMs, maxDelayMs), options.signal)
      const query = new URLSearchParams({ after: String(after) })
      if (options.types != null) query.set('types', options.types.join(','))
      if (cursorSpace != null) query.set('cursor_space', cursorSpace)
      // A connection that brings no byte for three heartbeats (a node that hangs, a half-open socket) is
      // dropped and made again; the time the consumer spends on an item does not count.
      const connection = new AbortController()
      const signal = options.signal == null ? connection.signal : AbortSignal.any([options.signal, connection.signal])
      let timer: ReturnType<typeof setTimeout> | undefined
      const watch = (): void => {
        clearTimeout(timer)
        timer = setTimeout(() => {
          connection.abort(new CairnUnavailableError(`The event stream was silent for ${quietMs} ms: reconnecting`))
        }, quietMs)
      }
      const pause = (): void => {
        clearTimeout(timer)
      }
      let res: Response
      try {
        watch()
        const ep = await this.endpoint()
        res = await fetch(`${ep.baseUrl}/v1/stream?${query.toString()}`, { headers: { authorization: `Bearer ${ep.token}`, accept: 'text/event-stream' }, signal })
      } catch (err) {
        pause()
        if (options.signal?.aborted === true) throw err
        failures++
        retryMs = undefined
        continue
      }
      if (!res.ok) {
        pause()
        const error = await apiError(res)
        if (res.status < 500) throw error
        failures++
        continue
      }
      const body = res.body!.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, controller) {
            watch()
            controller.enqueue(chunk)
          }
        })
      )
      try {
        // The signal ends the reading itself, and is checked after each item: under Deno, an aborted fetch's
        // body may go on bringing data (or wait for it) once its Response is collected.
        for await (const m of readSse(body, signal)) {
          retryMs = m.retry
          if (m.event === 'ready') {
            const ready = JSON.parse(m.data) as { cursor_space: string; heartbeat_ms?: number }
            cursorSpace = ready.cursor_space
            if (ready.heartbeat_ms != null) quietMs = 3 * ready.heartbeat_ms + 1000
            failures = 0
            watch()
          } else if (m.event === 'caught-up') {
            pause()
            yield { kind: 'caught-up', cursor: (JSON.parse(m.data) as { cursor: number }).cursor, cursorSpace: cursorSpace! }
            options.signal?.throwIfAborted()
            watch()
          } else if (m.event == null) {
            const event = JSON.parse(m.data) as CairnEvent<P>
            after = event.cursor
            pause()
            yield { kind: 'event', event, cursor: event.cursor, cursorSpace: cursorSpace! }
            options.signal?.throwIfAborted()
            watch()
          }
        }
      } catch (err) {
        if (options.signal?.aborted === true) throw err
      } finally {
        pause()
        connection.abort()
      }
      // The stream ended or broke (the node stopped): reconnect after the last event yielded.
      failures++
    }
  }
}
