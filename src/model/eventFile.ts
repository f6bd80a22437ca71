import * as v from 'valibot'
import { EventEnvelopeSchema, type EventEnvelope } from './envelope.ts'
import { jsonDepth } from './canonical.ts'
import { formatIssues } from './issues.ts'

/** The limits an event file must keep. */
export interface FileLimits {
  maxEventSize: number
  maxDepth: number
}

/** Why a file was refused: `reason` is the metric label, `detail` the readable explanation. */
export interface Rejection {
  reason: 'oversized' | 'malformed_json' | 'too_deep' | 'bad_envelope' | 'wrong_producer' | 'name_mismatch' | 'policy' | 'bad_payload' | 'not_member' | 'not_owner'
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
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
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
  return { envelope: e }
}
