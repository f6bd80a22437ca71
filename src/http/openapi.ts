import type * as v from 'valibot'
import { toJsonSchema } from '@valibot/to-json-schema'
import { PublishRequestSchema, PublishResultSchema } from '../model/publishRequest.ts'
import { VERSION } from '../version.ts'
import {
  ErrorSchema,
  PublishStreamAckSchema,
  EventSchema,
  EventsPageSchema,
  EventsQuerySchema,
  LimitsSchema,
  NoQuerySchema,
  SchemaInfoSchema,
  SchemaQuerySchema,
  SnapshotRequestSchema,
  StatusSchema
} from './schemas.ts'
import { StreamQuerySchema } from './stream.ts'
import { MAX_CURSOR } from './query.ts'

type Json = Record<string, unknown>

/** @returns a valibot schema as a JSON Schema (2020-12, the dialect of OpenAPI 3.1), without its $schema line */
function json(schema: v.GenericSchema, typeMode: 'input' | 'output' = 'output'): Json {
  const { $schema: _, ...rest } = toJsonSchema(schema, { target: 'draft-2020-12', typeMode, errorMode: 'ignore' }) as Json
  return rest
}

const ref = (name: string): Json => ({ $ref: `#/components/schemas/${name}` })
const jsonContent = (schema: Json): Json => ({ 'application/json': { schema } })
/** A JSON request body: `application/json`, or any `application/*+json` type (`application/ld+json`), taken alike. */
const jsonRequest = (schema: Json): Json => ({ 'application/json': { schema }, 'application/*+json': { schema } })
const error = (description: string): Json => ({ description, content: jsonContent(ref('Error')) })
const UNSUPPORTED_MEDIA_TYPE = error(
  'The body is not declared as JSON (Content-Type: application/json or an application/*+json type): `unsupported_media_type`; or it has a Content-Encoding other than identity (the node decodes none): `unsupported_encoding`'
)

/** @returns the query parameters of a strict object schema of strings */
function queryParameters(schema: v.ObjectSchema<v.ObjectEntries, undefined> | v.StrictObjectSchema<v.ObjectEntries, undefined>): Json[] {
  return Object.entries(schema.entries).map(([name, entry]) => {
    const s = json(entry as v.GenericSchema, 'input')
    const { description, ...rest } = s
    return { name, in: 'query', required: false, ...(description != null ? { description } : {}), schema: rest }
  })
}

const AUTH_ERRORS = { '401': error('No token, or not the one in api.token') }
/** A membership change is a publish of this node's, refused as any publish is while the node must not or cannot publish. */
const CHANGE_REFUSED = {
  '409': error(
    'This node must not publish: a peer holds a newer head of its own producer than its outbox has, or one with another event file at a seq it published (`producer_diverged`, as for POST /v1/events)'
  ),
  '503': error('The node cannot publish the change now (not started, a commit failed, or its clock is off from the network); retry')
}
const QUERY_ERRORS = { '400': error('A query parameter this route does not know, a repeated one, or a bad value') }
const CURSOR_ERRORS = {
  '409': error('A cursor this node cannot resume from: beyond the last cursor it handed out (`cursor_beyond_end`) or of another cursor space (`cursor_space_mismatch`); start again from after=0')
}

/**
 * @returns the OpenAPI 3.1 document of the loopback endpoint, its schemas generated from the valibot
 * schemas the routes validate with
 */
export function openApiDocument(): Json {
  const secured = { security: [{ bearer: [] }] }
  return {
    openapi: '3.1.0',
    info: {
      title: 'cairn loopback API',
      version: VERSION,
      description:
        'The HTTP API of a cairn node for the backend beside it (docs/api.md). Every error answer is `{ error: { code, message, issues } }`. Any route answers 405 (with Allow) to a method it does not take and 421 to a Host header that is not this loopback endpoint.'
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: "The token in the data directory's api.token" } },
      schemas: {
        Error: json(ErrorSchema),
        PublishRequest: json(PublishRequestSchema),
        PublishResult: json(PublishResultSchema),
        PublishStreamAck: json(PublishStreamAckSchema),
        Event: json(EventSchema),
        EventsPage: json(EventsPageSchema),
        Limits: json(LimitsSchema),
        SchemaInfo: json(SchemaInfoSchema),
        Status: json(StatusSchema),
        SnapshotRequest: json(SnapshotRequestSchema),
        MemberChange: {
          type: 'object',
          description: 'The signed membership change published (a cairn.members event) and its publish result',
          properties: { change: { type: 'object' }, event_id: { type: 'string' }, seq: { type: 'integer' }, cid: { type: 'string' }, replayed: { type: 'boolean' } },
          required: ['change', 'event_id', 'seq', 'cid']
        }
      }
    },
    paths: {
      '/healthz': {
        get: {
          summary: 'Liveness',
          responses: { '200': { description: 'The process serves requests', content: jsonContent({ type: 'object', properties: { status: { const: 'ok' } }, required: ['status'] }) } }
        }
      },
      '/readyz': {
        get: {
          summary: 'Readiness',
          responses: {
            '200': { description: 'Ready', content: jsonContent({ type: 'object', properties: { status: { const: 'ready' } }, required: ['status'] }) },
            '503': {
              description: 'Not ready, with the reason',
              content: jsonContent({ type: 'object', properties: { status: { const: 'not ready' }, reason: { type: 'string' } }, required: ['status'] })
            }
          }
        }
      },
      '/status': {
        get: { summary: 'The status document (open, for monitoring)', responses: { '200': { description: 'As cairn status --json, without `running`', content: jsonContent({ type: 'object' }) } } }
      },
      '/metrics': { get: { summary: 'Prometheus metrics', responses: { '200': { description: 'Prometheus text format', content: { 'text/plain': { schema: { type: 'string' } } } } } } },
      '/v1/openapi.json': { get: { summary: 'This document (open)', responses: { '200': { description: 'OpenAPI 3.1', content: jsonContent({ type: 'object' }) } } } },
      '/v1/limits': {
        get: {
          ...secured,
          summary: "The endpoint's limits",
          parameters: queryParameters(NoQuerySchema),
          responses: { '200': { description: 'The limits', content: jsonContent(ref('Limits')) }, ...QUERY_ERRORS, ...AUTH_ERRORS }
        }
      },
      '/v1/status': {
        get: {
          ...secured,
          summary: 'The status document, as cairn status --json',
          parameters: queryParameters(NoQuerySchema),
          responses: { '200': { description: 'Status', content: jsonContent(ref('Status')) }, ...QUERY_ERRORS, ...AUTH_ERRORS }
        }
      },
      '/v1/events/stream': {
        post: {
          ...secured,
          summary: 'Publish a stream of events: NDJSON in (one publish request per line), NDJSON out (one acknowledgement per line, in order, each once its event is durable)',
          description:
            'Each non-blank line is what `POST /v1/events` takes as one event; its idempotency key is its `event_id`. Each acknowledgement line is `{ line, event_id, seq, cid, replayed }` (the PublishResult and the line number), or `{ line, error: { code, message, issues, status } }` for a line refused (the status `POST /v1/events` would answer); the stream goes on after a refused line. A line over `publish_stream_line_bytes` is refused once that long and the rest of it skipped; at most `publish_stream_window` lines (and the larger of `max_body_bytes` and `publish_stream_line_bytes` of them) are read before their acknowledgements are taken. Lines read while a commit is written join the next commit.',
          requestBody: {
            required: true,
            content: { 'application/x-ndjson': { schema: { type: 'string', description: 'One PublishRequest (JSON) per line' } } }
          },
          responses: {
            '200': {
              description: 'The acknowledgements, one line per request line, as each is durable or refused',
              content: { 'application/x-ndjson': { schema: { type: 'string', description: 'One PublishStreamAck (JSON) per line' } } }
            },
            '400': error('An Idempotency-Key header (a streaming publish takes its keys per line, as event_id)'),
            ...AUTH_ERRORS,
            '415': error(
              'The body is not declared as NDJSON (Content-Type: application/x-ndjson): `unsupported_media_type`; or it has a Content-Encoding other than identity (the node decodes none): `unsupported_encoding`'
            )
          }
        }
      },
      '/v1/events': {
        post: {
          ...secured,
          summary: 'Publish one event, or a batch (an array) in one commit: all or none',
          parameters: [
            {
              name: 'Idempotency-Key',
              in: 'header',
              required: false,
              description:
                'The idempotency key of a single event without `event_id`; for a batch, event i without `event_id` gets the key `KEY#i`. Keys are kept as long as the data directory. The header is read byte for byte as Latin-1 (HTTP header values are bytes): a key with other characters goes in `event_id`. At most 256 UTF-16 code units.',
              schema: { type: 'string', minLength: 1, maxLength: 256 }
            }
          ],
          requestBody: { required: true, content: jsonRequest({ oneOf: [ref('PublishRequest'), { type: 'array', minItems: 1, items: ref('PublishRequest') }] }) },
          responses: {
            '201': {
              description: 'Published and durable (a batch: at least one event is new)',
              content: jsonContent({ oneOf: [ref('PublishResult'), { type: 'array', items: ref('PublishResult') }] })
            },
            '200': {
              description: 'Every event was published before under its idempotency key: nothing new (header Idempotent-Replayed: true)',
              headers: { 'Idempotent-Replayed': { schema: { const: 'true' } } },
              content: jsonContent({ oneOf: [ref('PublishResult'), { type: 'array', items: ref('PublishResult') }] })
            },
            '400': error('Malformed JSON (not UTF-8, or not one JSON text), a request or payload that fails its checks (issues name each problem), or a key repeated in a batch'),
            ...AUTH_ERRORS,
            '409': error(
              'The idempotency key was used for a different request (`idempotency_key_reused`; `event_id` names the first event), or a peer holds a newer head of this node’s own producer than its outbox has, or one with another event file at a seq it published (`producer_diverged`: restored from an older backup, or its identity runs on another node too; it publishes nothing until an operator acts), or this node holds an owner’s removal of itself (`removed_member`: every other node refuses its events; it publishes nothing until an owner adds it again)'
            ),
            '413': error('The body, an event or the batch is over a limit; `limits` says which'),
            '415': UNSUPPORTED_MEDIA_TYPE,
            '503': error('The node cannot publish now (not started, a commit failed, or its clock is off from the network); retry with the same key')
          }
        },
        get: {
          ...secured,
          summary: 'A page of events, in cursor order (those every plugin has processed, as the stream shows)',
          parameters: queryParameters(EventsQuerySchema),
          responses: { '200': { description: 'A page', content: jsonContent(ref('EventsPage')) }, ...QUERY_ERRORS, ...AUTH_ERRORS, ...CURSOR_ERRORS }
        }
      },
      '/v1/stream': {
        get: {
          ...secured,
          summary: 'The live event stream (Server-Sent Events); docs/api.md has its exact format',
          parameters: [
            ...queryParameters(StreamQuerySchema),
            {
              name: 'Last-Event-ID',
              in: 'header',
              required: false,
              description: `Resume after this cursor (wins over \`after\`): a whole number up to ${MAX_CURSOR}`,
              schema: { type: 'string', pattern: '^\\d+$' }
            }
          ],
          responses: {
            '200': {
              description:
                '`retry:` and a `ready` event at once; then one unnamed message per event (data: an Event, id: its cursor), `caught-up` once the backlog is delivered, and a `: heartbeat` comment when quiet',
              content: { 'text/event-stream': { schema: { type: 'string' } } }
            },
            ...QUERY_ERRORS,
            ...AUTH_ERRORS,
            ...CURSOR_ERRORS
          }
        }
      },
      '/v1/schemas': {
        get: {
          ...secured,
          summary: "The loaded plugins' payload schemas, one per type",
          parameters: queryParameters(NoQuerySchema),
          responses: {
            '200': { description: 'The schemas', content: jsonContent({ type: 'object', properties: { schemas: { type: 'array', items: ref('SchemaInfo') } }, required: ['schemas'] }) },
            ...QUERY_ERRORS,
            ...AUTH_ERRORS
          }
        }
      },
      '/v1/snapshots': {
        post: {
          ...secured,
          summary: 'Write signed snapshots of one plugin, or of every plugin that takes part, into the outbox (as cairn snapshot does)',
          requestBody: { required: false, content: jsonRequest(ref('SnapshotRequest')) },
          responses: {
            '200': { description: 'The snapshots written', content: jsonContent({}) },
            '400': error('Malformed JSON (not UTF-8, or not one JSON text) or a bad request'),
            ...AUTH_ERRORS,
            '413': error("The body is over 4096 bytes; `limits` holds the endpoint's limits, as in every 413"),
            '415': UNSUPPORTED_MEDIA_TYPE
          }
        }
      },
      '/v1/members': {
        get: {
          ...secured,
          summary: 'The membership, as cairn members list --json prints it (on any node: only changes need an owner)',
          parameters: queryParameters(NoQuerySchema),
          responses: { '200': { description: 'The members', content: jsonContent({ type: 'object' }) }, ...QUERY_ERRORS, ...AUTH_ERRORS }
        },
        post: {
          ...secured,
          summary: 'Add a member or change its role or name (an owner only): `{peer_id, role?, name?}`',
          requestBody: {
            required: true,
            content: jsonRequest({ type: 'object', properties: { peer_id: { type: 'string' }, role: { enum: ['member', 'owner'] }, name: { type: 'string' } }, required: ['peer_id'] })
          },
          responses: {
            '201': {
              description:
                'The change, signed and published. Another owner made a member is removed (recording its last seq this node saw) and added back as a member in one commit: the answer is the add',
              content: jsonContent(ref('MemberChange'))
            },
            '400': error('Malformed JSON (not UTF-8, or not one JSON text) or a bad peer id, role or name'),
            ...AUTH_ERRORS,
            '403': error('This node is not an owner (`not_owner`)'),
            '413': error("The body is over 4096 bytes; `limits` holds the endpoint's limits, as in every 413"),
            '415': UNSUPPORTED_MEDIA_TYPE,
            ...CHANGE_REFUSED
          }
        }
      },
      '/v1/members/{peer_id}': {
        delete: {
          ...secured,
          summary: 'Remove a member (an owner only)',
          parameters: [{ name: 'peer_id', in: 'path', required: true, schema: { type: 'string' } }],
          responses: {
            '200': { description: 'The change, signed and published', content: jsonContent(ref('MemberChange')) },
            '400': error('Not a member, or the last owner'),
            ...AUTH_ERRORS,
            '403': error('This node is not an owner (`not_owner`)'),
            ...CHANGE_REFUSED
          }
        }
      },
      '/v1/schemas/{type}': {
        get: {
          ...secured,
          summary: "A type's payload schema",
          parameters: [{ name: 'type', in: 'path', required: true, schema: { type: 'string' } }, ...queryParameters(SchemaQuerySchema)],
          responses: { '200': { description: 'The schema', content: jsonContent(ref('SchemaInfo')) }, ...QUERY_ERRORS, ...AUTH_ERRORS, '404': error('No loaded plugin declares this type or version') }
        }
      }
    }
  }
}
