import { PublishResultSchema } from '../model/publishRequest.ts'
import * as v from 'valibot'
import { EventEnvelopeSchema, EventTypeSchema, PeerIdSchema } from '../model/envelope.ts'
import { CursorParamSchema, CursorSpaceSchema, TypesParamSchema } from './query.ts'

/** The one shape of every error answer. */
export const ErrorSchema = v.object({
  error: v.object({
    code: v.pipe(
      v.string(),
      v.description(
        'Machine-readable: invalid_request, unauthorized, not_found, method_not_allowed, unsupported_media_type, unsupported_encoding, too_large, idempotency_key_reused, cursor_beyond_end, cursor_space_mismatch, …'
      )
    ),
    message: v.pipe(v.string(), v.description('What failed, then the detail after a colon')),
    issues: v.array(v.object({ path: v.string(), message: v.string(), code: v.string() })),
    event_id: v.optional(v.pipe(v.string(), v.description('For idempotency_key_reused: the event first published under the key'))),
    limits: v.optional(v.pipe(v.record(v.string(), v.number()), v.description('For too_large: the limits (as GET /v1/limits)')))
  })
})

/** One acknowledgement line of a streaming publish (`POST /v1/events/stream`): the line's result, or its refusal. */
export const PublishStreamAckSchema = v.union([
  v.object({
    line: v.pipe(v.number(), v.integer(), v.minValue(1), v.description('The request line acknowledged, counting from 1 (blank lines count, and get no acknowledgement)')),
    ...PublishResultSchema.entries
  }),
  v.object({
    line: v.pipe(v.number(), v.integer(), v.minValue(1)),
    error: v.object({
      ...ErrorSchema.entries.error.entries,
      status: v.pipe(v.number(), v.integer(), v.description('The status POST /v1/events would answer this line with'))
    })
  })
])

/** The endpoint's limits, as `GET /v1/limits` answers them. */
export const LimitsSchema = v.object({
  max_body_bytes: v.pipe(v.number(), v.description('The largest request body (max-body-size)')),
  max_batch: v.pipe(v.number(), v.description('The most events one request publishes (max-batch)')),
  max_event_bytes: v.pipe(v.number(), v.description('The largest event file (max-event-size)')),
  max_depth: v.pipe(v.number(), v.description('The deepest JSON nesting a payload may have: the max-depth setting less the one level its event file wraps it in')),
  max_idempotency_key: v.pipe(v.number(), v.description("The longest idempotency key, in UTF-16 code units (JavaScript's length: a character beyond U+FFFF counts 2)")),
  max_page: v.pipe(v.number(), v.description('The most events GET /v1/events returns at once')),
  max_types: v.pipe(v.number(), v.description('The most types one `types` filter names')),
  stream_heartbeat_ms: v.pipe(v.number(), v.description('A quiet stream writes a comment this often (stream-heartbeat)')),
  stream_retry_ms: v.pipe(v.number(), v.description("The stream's `retry:` field")),
  publish_stream_line_bytes: v.pipe(v.number(), v.description('The longest line of a streaming publish (POST /v1/events/stream): max_event_bytes and room for the request fields')),
  publish_stream_window: v.pipe(
    v.number(),
    v.description(
      'The most lines of a streaming publish in flight before the client takes their acknowledgements (max-batch; also at most the larger of max_body_bytes and publish_stream_line_bytes of them)'
    )
  )
})

/** An event as the stream and `GET /v1/events` show it. */
export const EventSchema = v.object({
  ...EventEnvelopeSchema.entries,
  cursor: v.pipe(v.number(), v.integer(), v.description("Its place in this node's order: resume after it with after= or Last-Event-ID")),
  cid: v.pipe(v.string(), v.description('The CID of its event file'))
})

/** The most events one page of `GET /v1/events` holds. */
export const MAX_PAGE = 1000

/** The query parameters of `GET /v1/events`. */
export const EventsQuerySchema = v.strictObject({
  after: v.optional(CursorParamSchema),
  type: v.optional(v.pipe(TypesParamSchema, v.description('Only this event type, or these, comma-separated (`a.b,c.d`)'))),
  producer: v.optional(PeerIdSchema),
  limit: v.optional(v.pipe(v.string(), v.regex(/^([1-9]\d{0,3})$/, `Expected a page size from 1 to ${MAX_PAGE}`), v.description(`Events per page, 1 to ${MAX_PAGE} (default 100)`))),
  cursor_space: v.optional(CursorSpaceSchema)
})

/** A page of `GET /v1/events`. */
export const EventsPageSchema = v.object({
  cursor_space: CursorSpaceSchema,
  events: v.array(EventSchema),
  next_after: v.pipe(v.number(), v.description('Pass as after= for the next page (the last cursor of this page, or the after given)')),
  has_more: v.pipe(v.boolean(), v.description('Whether more events match right now'))
})

/** A type's payload schema, as `GET /v1/schemas` lists it. */
export const SchemaInfoSchema = v.object({
  type: EventTypeSchema,
  plugin: v.string(),
  version: v.pipe(v.number(), v.description('The version this schema describes: the newest the plugin declares, unless ?version= asked for another (a publish without a version is v1)')),
  versions: v.array(v.number()),
  schema: v.pipe(v.record(v.string(), v.unknown()), v.description("The payload's JSON Schema at `version`"))
})

/** The query parameters of `GET /v1/schemas/{type}`. */
export const SchemaQuerySchema = v.strictObject({
  version: v.optional(v.pipe(v.string(), v.regex(/^[1-9]\d{0,6}$/, 'Expected a version: a whole number from 1')))
})

/** No query parameters. */
export const NoQuerySchema = v.strictObject({})

/** What `GET /v1/status` (and `cairn status --json`) answers: the status document, described in docs/operations.md. */
export const StatusSchema = v.looseObject({
  running: v.literal(true),
  peer_id: PeerIdSchema,
  version: v.string(),
  verdict: v.string(),
  events: v.number()
})

/** The body of `POST /v1/snapshots`: one plugin, or every plugin that takes part. */
export const SnapshotRequestSchema = v.strictObject({
  plugin: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(128), v.description('The plugin to snapshot; absent: every plugin that takes part')))
})
