import { createHash } from 'node:crypto'
import * as v from 'valibot'
import { uuidv7 } from 'uuidv7'
import { EventTooLargeError, IdempotencyConflictError, ValidationError } from '../errors.ts'
import { CanonicalText, canonicalJson, jsonDepth } from '../model/canonical.ts'
import { UuidV7Schema } from '../model/envelope.ts'
import { type Issue, issueLine, joinPath, toIssues } from '../model/issues.ts'
import { IdempotencyKeySchema, PublishRequestSchema, type PublishRequest, type PublishResult } from '../model/publishRequest.ts'
import { isReservedType, RESERVED_PREFIX } from '../model/members.ts'
import { LONE_SURROGATE_TEXT, loneSurrogateIn, mayHoldLoneSurrogate } from '../model/unicode.ts'

/** Checks a payload against a local plugin's schema; returns the version to use and any issues. */
export type PublishValidator = (type: string, version: number | undefined, payload: unknown) => { version: number; issues: Issue[] }

/** A publish request that passed its checks: the version it is published at, its event id, key and request hash. */
export type CheckedRequest = Omit<PublishRequest, 'event_id'> & {
  version: number
  event_id: string
  /** the payload as canonical JSON (encoded once, for the hash, the size check and the event file) */
  payloadJson: CanonicalText
  /** the idempotency key (absent: none given, the request is never deduplicated) */
  key?: string
  /** identifies the request for its key: the same key with another hash is a conflict */
  hash: string
}

/** An event published earlier under an idempotency key. */
export interface PublishedUnderKey {
  result: Omit<PublishResult, 'replayed'>
  /** the hash of the request that published it (absent for events published before hashes were kept) */
  hash?: string
}

/** What a request is checked against. */
export interface RequestChecks {
  maxEventSize: number
  maxDepth: number
  validate?: PublishValidator
  /** @returns the event this node already published under an idempotency key */
  published: (key: string) => PublishedUnderKey | undefined
  /** whether the request may use cairn's reserved namespace (only cairn's own changes do) */
  reserved?: boolean
}

/** Room left in an event for its envelope's fields, beyond the payload. */
const ENVELOPE_ROOM = 600

/**
 * @returns the hash that tells two requests under one idempotency key apart: everything but the key itself,
 * an omitted version being version 1 (what it is published as)
 */
export function requestHash(req: PublishRequest, payload: CanonicalText): string {
  const { event_id: _key, ...rest } = req
  return createHash('sha256')
    .update(canonicalJson({ ...rest, payload, version: rest.version ?? 1 }))
    .digest('base64url')
}

const utf8 = new TextEncoder()

/**
 * @returns the result of an event published earlier under `key` (flagged a replay), or undefined
 * @throws IdempotencyConflictError when that event was published from a different request
 */
export function replayOf(key: string, hash: string, earlier: PublishedUnderKey | undefined, at: string): PublishResult | undefined {
  if (earlier == null) return undefined
  if (earlier.hash != null && earlier.hash !== hash) {
    throw new IdempotencyConflictError(
      `Cannot publish${at === '' ? '' : ` event ${at}`}: the idempotency key ${JSON.stringify(key)} was used for event ${earlier.result.event_id} (seq ${earlier.result.seq}) with a different request; use a new key for a new event`,
      earlier.result.event_id,
      [{ path: joinPath(at, 'event_id'), message: `was already used for event ${earlier.result.event_id} with a different request`, code: 'idempotency_key_reused' }]
    )
  }
  return { ...earlier.result, replayed: true }
}

/**
 * Checks one publish request. `at` names it in messages ('' alone, '[i]' in a batch); `headerKey` is the
 * request's Idempotency-Key, for a request without an event_id of its own.
 *
 * @returns the request to commit, or the result of the event already published under its idempotency key
 * @throws ValidationError for a bad request or payload, EventTooLargeError for a payload over the limit,
 * IdempotencyConflictError for a key already used with a different request
 */
export function checkRequest(input: unknown, at: string, checks: RequestChecks, headerKey?: string): { request: CheckedRequest } | { result: PublishResult } {
  const which = at === '' ? '' : ` event ${at}`
  const fail = (issues: Issue[], what = issues.map(issueLine).join('; ')): never => {
    throw new ValidationError(`Cannot publish${which}: ${what}`, issues)
  }
  const r = v.safeParse(PublishRequestSchema, input)
  if (!r.success) fail(toIssues(r.issues, at))
  const req = (r as v.SafeParseResult<typeof PublishRequestSchema> & { success: true }).output
  if (headerKey != null && req.event_id != null && headerKey !== req.event_id && at === '') {
    fail([{ path: 'event_id', message: 'differs from the Idempotency-Key header; send one of them, or the same key in both', code: 'idempotency_key_mismatch' }])
  }
  if (isReservedType(req.type) && checks.reserved !== true) {
    const issues = [{ path: joinPath(at, 'type'), message: `${RESERVED_PREFIX}* is reserved for cairn itself (membership changes are made with cairn members or /v1/members)`, code: 'reserved_type' }]
    throw new ValidationError(`Cannot publish${which} ${req.type}: the ${RESERVED_PREFIX} namespace is reserved`, issues)
  }
  // Peers check the event file, whose envelope is one level around the payload: a payload of maxDepth levels
  // would be acknowledged here and refused by every peer.
  const depth = jsonDepth(req.payload, checks.maxDepth) + 1
  if (depth > checks.maxDepth) {
    fail([{ path: joinPath(at, 'payload'), message: `nests more than ${checks.maxDepth - 1} levels (its event file, one level more, may nest ${checks.maxDepth}: max-depth)`, code: 'too_deep' }])
  }
  const key = req.event_id ?? headerKey
  const payloadJson = new CanonicalText(canonicalJson(req.payload))
  const hash = requestHash(req, payloadJson)
  if (key != null) {
    const replay = replayOf(key, hash, checks.published(key), at)
    if (replay != null) return { result: replay }
  }
  // The payload's text must be well-formed, as the envelope's fields are (PublishRequestSchema): peers refuse
  // an event file with a lone surrogate in it (readEventFile). Its canonical JSON spells one as an escape.
  if (mayHoldLoneSurrogate(payloadJson.text)) {
    const found = loneSurrogateIn(req.payload)
    if (found != null) {
      fail([{ path: joinPath(at, joinPath('payload', found.path)), message: `${found.memberName ? 'a member name holds' : 'holds'} ${LONE_SURROGATE_TEXT}`, code: 'lone_surrogate' }])
    }
  }
  // cairn's own events are checked by their service (the membership), not by plugins, which may not declare them.
  const own = checks.reserved === true && isReservedType(req.type)
  const checked = (own ? undefined : checks.validate?.(req.type, req.version, req.payload)) ?? { version: req.version ?? 1, issues: [] }
  if (checked.issues.length > 0) fail(checked.issues.map((i) => ({ ...i, path: joinPath(at, i.path) })))
  const size = utf8.encode(payloadJson.text).length
  if (size + ENVELOPE_ROOM > checks.maxEventSize) {
    throw new EventTooLargeError(`Cannot publish${which} ${req.type}: the event would be over ${checks.maxEventSize} bytes (payload alone is ${size} bytes)`)
  }
  // A key that is a UUIDv7 is the event's id (cairn publish --id); any other key gets a new one.
  const eventId = key != null && v.is(UuidV7Schema, key) ? key : uuidv7()
  return { request: { ...req, version: checked.version, event_id: eventId, key, hash, payloadJson } }
}

/**
 * Checks the size of a batch request and that no idempotency key repeats in it: an event's own `event_id`, or
 * under the request's Idempotency-Key `headerKey` the key `headerKey#i` of an event without one (which an
 * `event_id` of another event may spell too).
 *
 * @throws ValidationError for an empty batch or a repeated key, EventTooLargeError for more than `maxBatch` events
 */
export function checkBatch(inputs: readonly unknown[], maxBatch: number, headerKey?: string): void {
  if (inputs.length === 0) throw new ValidationError('Cannot publish: the batch is empty', [{ path: '', message: 'expected at least one event', code: 'empty_batch' }])
  if (inputs.length > maxBatch) {
    throw new EventTooLargeError(`Cannot publish ${inputs.length} events in one request: at most ${maxBatch} (the max-batch setting) commit together`)
  }
  const seen = new Map<string, number>()
  const issues: Issue[] = []
  for (const [i, input] of inputs.entries()) {
    const own = (input as { event_id?: unknown } | null)?.event_id
    // An event_id that is no valid key fails its own check; one of another type is not a key.
    const key = own == null ? (headerKey == null ? undefined : batchKey(headerKey, i)) : typeof own === 'string' && v.is(IdempotencyKeySchema, own) ? own : undefined
    if (key == null) continue
    const first = seen.get(key)
    if (first != null)
      issues.push({
        path: own == null ? `[${i}]` : `[${i}].event_id`,
        message: `repeats the idempotency key of [${first}]${own == null ? ` (${JSON.stringify(key)}: the Idempotency-Key header and its index)` : ''}`,
        code: 'duplicate_key'
      })
    else seen.set(key, i)
  }
  if (issues.length > 0) throw new ValidationError(`Cannot publish: ${issues.map(issueLine).join('; ')}; a batch publishes each key once`, issues)
}

/** @returns the idempotency key of a batch's i-th event under the request's Idempotency-Key header */
export function batchKey(headerKey: string, i: number): string {
  return `${headerKey}#${i}`
}
