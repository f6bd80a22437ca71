import * as v from 'valibot'
import { EventEnvelopeSchema, type EventEnvelope } from './envelope.ts'
import { jsonDepth } from './canonical.ts'
import { formatIssues, joinPath } from './issues.ts'
import { LONE_SURROGATE_TEXT, loneSurrogateIn, mayHoldLoneSurrogate } from './unicode.ts'

/** The limits an event file must keep. */
export interface FileLimits {
  maxEventSize: number
  maxDepth: number
}

/** Why a file was refused: `reason` is the metric label, `detail` the readable explanation. */
export interface Rejection {
  reason: 'oversized' | 'malformed_json' | 'too_deep' | 'bad_envelope' | 'wrong_producer' | 'name_mismatch' | 'policy' | 'bad_payload' | 'not_member' | 'not_owner' | 'reserved_type'
  detail: string
}

/**
 * Checks an event file fetched from `producer`'s outbox against the layout, the limits and the envelope schema.
 *
 * @param expected what the file's place in the tree says it is
 * @returns the envelope, or why it is refused
 */
export function readEventFile(bytes: Uint8Array, expected: { producer: string; seq: number; eventId: string }, limits: FileLimits): { envelope: EventEnvelope } | { rejection: Rejection } {
  if (bytes.length > limits.maxEventSize) {
    return { rejection: { reason: 'oversized', detail: `${bytes.length} bytes is over the limit of ${limits.maxEventSize}` } }
  }
  let json: unknown
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
    json = JSON.parse(text)
  } catch (err) {
    return { rejection: { reason: 'malformed_json', detail: (err as Error).message } }
  }
  const depth = jsonDepth(json, limits.maxDepth)
  if (depth > limits.maxDepth) {
    return { rejection: { reason: 'too_deep', detail: `JSON nests more than ${limits.maxDepth} levels` } }
  }
  const r = v.safeParse(EventEnvelopeSchema, json)
  if (!r.success) return { rejection: { reason: 'bad_envelope', detail: formatIssues(r.issues).join('; ') } }
  const e = r.output
  if (e.producer !== expected.producer) {
    return { rejection: { reason: 'wrong_producer', detail: `the file claims producer ${e.producer} but sits in the outbox of ${expected.producer}` } }
  }
  if (e.seq !== expected.seq || e.event_id !== expected.eventId) {
    return { rejection: { reason: 'name_mismatch', detail: `the file holds seq ${e.seq} and event_id ${e.event_id} but is named for seq ${expected.seq} and ${expected.eventId}` } }
  }
  // The envelope's text fields are checked by its schema; the payload's strings and member names here. A
  // lone surrogate would reach plugins, SQLite's JSON functions and readers of the API as other text than
  // the producer wrote, or not at all.
  if (mayHoldLoneSurrogate(text)) {
    const at = loneSurrogateIn(e.payload)
    if (at != null) return { rejection: { reason: 'bad_payload', detail: `${joinPath('payload', at.path)}: ${at.memberName ? 'a member name holds' : 'holds'} ${LONE_SURROGATE_TEXT}` } }
  }
  return { envelope: e }
}
