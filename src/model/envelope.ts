import * as v from 'valibot'
import { LONE_SURROGATE_TEXT } from './unicode.ts'

/** A UUIDv7 (RFC 9562): time-ordered, globally unique. */
export const UuidV7Schema = v.pipe(v.string(), v.regex(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'Expected a lowercase UUIDv7'))

/** An event type: lowercase dotted words, such as `workspace.invited`. */
export const EventTypeSchema = v.pipe(
  v.string(),
  v.regex(/^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)+$/, 'Expected a dotted lowercase event type such as workspace.invited'),
  v.maxLength(128, 'Expected an event type of at most 128 characters')
)

/** A hybrid logical clock timestamp: `<ms, 13 digits>-<counter, 4 hex>`, ordered as text. */
export const HlcSchema = v.pipe(v.string(), v.regex(/^\d{13}-[0-9a-f]{4}$/, 'Expected an HLC timestamp such as 1763822400000-0000'))

/** A libp2p peer id in its string form. */
export const PeerIdSchema = v.pipe(v.string(), v.regex(/^(12D3Koo|Qm)[1-9A-HJ-NP-Za-km-z]{40,60}$/, 'Expected a libp2p peer id'))

/**
 * Text the node keeps as SQLite TEXT (UTF-8) must be well-formed Unicode: a lone UTF-16 surrogate would be
 * stored as U+FFFD, so two different texts would become one (two idempotency keys colliding, a row differing
 * from its event file). See unicode.ts.
 */
export const wellFormed = (what: string) => v.regex(/^\P{Cs}*$/u, `Expected ${what} of well-formed Unicode: it holds ${LONE_SURROGATE_TEXT}`)

/** Free text of at most `max` UTF-16 code units, well-formed (`what` names it in messages). */
const shortText = (max: number, what: string) => v.pipe(v.string(), v.maxLength(max, `Expected at most ${max} characters`), wellFormed(what))

/** The only thing that crosses nodes: one event file. */
export const EventEnvelopeSchema = v.strictObject({
  event_id: UuidV7Schema,
  type: EventTypeSchema,
  version: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1_000_000)),
  producer: PeerIdSchema,
  seq: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(Number.MAX_SAFE_INTEGER)),
  hlc: HlcSchema,
  occurred_at: v.pipe(v.string(), v.isoTimestamp('Expected an ISO 8601 timestamp')),
  actor: v.optional(shortText(512, 'an actor')),
  correlation_id: v.optional(shortText(256, 'a correlation id')),
  causation_id: v.optional(shortText(256, 'a causation id')),
  payload: v.unknown()
})

/** An event envelope as it travels between nodes and as plugins receive it. */
export type EventEnvelope = v.InferOutput<typeof EventEnvelopeSchema>
