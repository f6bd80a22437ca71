import * as v from 'valibot'
import { EventTypeSchema, UuidV7Schema, wellFormed } from './envelope.ts'

/**
 * The longest idempotency key accepted (an `Idempotency-Key` header or an `event_id`), in UTF-16 code units
 * (JavaScript's `length`): a character beyond U+FFFF, such as an emoji, counts 2.
 */
export const MAX_IDEMPOTENCY_KEY = 256

/** The checks of an idempotency key's text, refusing `controls`. */
function idempotencyKey(controls: RegExp) {
  return v.pipe(
    v.string(),
    v.minLength(1, 'Expected an idempotency key of at least 1 character'),
    v.maxLength(MAX_IDEMPOTENCY_KEY, `Expected an idempotency key of at most ${MAX_IDEMPOTENCY_KEY} UTF-16 code units (JavaScript's length: a character beyond U+FFFF, such as an emoji, counts 2)`),
    v.regex(controls, 'Expected an idempotency key without control characters'),
    wellFormed('an idempotency key'),
    v.description(
      'The idempotency key: a retry with the same key and the same request returns the first result (200, `replayed: true`) instead of publishing again; the same key with a different request is 409. A lowercase UUIDv7 is also used as the event id.'
    )
  )
}

/**
 * An idempotency key chosen by the client: any printable, well-formed text (no control characters, C0, DEL
 * or C1, no lone surrogates) of 1 to 256 UTF-16 code units, such as `order-123`. A UUIDv7 is also taken as
 * the event's id.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what the check refuses
export const IdempotencyKeySchema = idempotencyKey(/^[^\u0000-\u001f\u007f-\u009f]*$/)

/**
 * An `Idempotency-Key` header, its bytes read as Latin-1: C0 and DEL are refused, but not the bytes 0x80-0x9f,
 * which are C1 characters read so and are in the UTF-8 of many characters (the 0x82 of "€") that clients send
 * in headers as raw bytes; such a header is a key of its own, the same on every retry.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what the check refuses
export const IdempotencyKeyHeaderSchema = idempotencyKey(/^[^\u0000-\u001f\u007f]*$/)

/** The body of `POST /v1/events` (one element of a batch) and what `cairn publish` sends. */
export const PublishRequestSchema = v.strictObject({
  type: EventTypeSchema,
  payload: v.pipe(v.unknown(), v.description('The event payload: any JSON value the plugins of its type accept.')),
  version: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1_000_000))),
  event_id: v.optional(IdempotencyKeySchema),
  actor: v.optional(v.pipe(v.string(), v.maxLength(512), wellFormed('an actor'))),
  correlation_id: v.optional(v.pipe(v.string(), v.maxLength(256), wellFormed('a correlation id'))),
  causation_id: v.optional(v.pipe(v.string(), v.maxLength(256), wellFormed('a causation id')))
})

export type PublishRequest = v.InferOutput<typeof PublishRequestSchema>

/** What a publish returns once it is durable. */
export const PublishResultSchema = v.object({
  event_id: UuidV7Schema,
  seq: v.pipe(v.number(), v.integer(), v.minValue(1)),
  cid: v.string(),
  replayed: v.pipe(v.boolean(), v.description('true when an earlier request with the same idempotency key published this event; nothing new was published'))
})

/** What a publish returns once it is durable. */
export type PublishResult = v.InferOutput<typeof PublishResultSchema>
