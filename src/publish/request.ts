import * as v from 'valibot'
import { EventTooLargeError, ValidationError } from '../errors.ts'
import { canonicalJson, jsonDepth } from '../model/canonical.ts'
import { formatIssues } from '../model/issues.ts'
import { isReservedType, RESERVED_PREFIX } from '../model/members.ts'
import { PublishRequestSchema, type PublishRequest, type PublishResult } from '../model/publishRequest.ts'

/** Checks a payload against a local plugin's schema; returns the version to use and any issues. */
export type PublishValidator = (type: string, version: number | undefined, payload: unknown) => { version: number; issues: string[] }

/** A publish request that passed its checks, with the version it is published at. */
export type CheckedRequest = PublishRequest & { version: number }

/** What a request is checked against. */
export interface RequestChecks {
  maxEventSize: number
  maxDepth: number
  validate?: PublishValidator
  /** @returns the result of an event_id already published */
  published: (eventId: string) => PublishResult | undefined
  /** whether the request may use cairn's reserved namespace (only cairn's own changes do) */
  reserved?: boolean
}

/** Room left in an event for its envelope's fields, beyond the payload. */
const ENVELOPE_ROOM = 600

/**
 * Checks one publish request. `at` names it in messages ('' alone, '[i]' in a batch).
 *
 * @returns the request to commit, or the result of an event_id already published
 * @throws ValidationError for a bad request or payload, EventTooLargeError for a payload over the limit
 */
export function checkRequest(input: unknown, at: string, checks: RequestChecks): { request: CheckedRequest } | { result: PublishResult } {
  const which = at === '' ? '' : ` event ${at}`
  const prefix = (issues: string[]): string[] => (at === '' ? issues : issues.map((i) => `${at}.${i}`))
  const r = v.safeParse(PublishRequestSchema, input)
  if (!r.success) {
    const issues = prefix(formatIssues(r.issues))
    throw new ValidationError(`Cannot publish${which}: ${issues.join('; ')}`, issues)
  }
  const req = r.output
  if (isReservedType(req.type) && checks.reserved !== true) {
    const issues = prefix([`type: ${RESERVED_PREFIX}* is reserved for cairn itself (membership changes are made with cairn members or /v1/members)`])
    throw new ValidationError(`Cannot publish${which} ${req.type}: the ${RESERVED_PREFIX} namespace is reserved`, issues)
  }
  const existing = req.event_id == null ? undefined : checks.published(req.event_id)
  if (existing != null) return { result: existing }
  const depth = jsonDepth(req.payload, checks.maxDepth)
  if (depth > checks.maxDepth) {
    const issues = prefix([`payload: nests more than ${checks.maxDepth} levels`])
    throw new ValidationError(`Cannot publish${which}: payload nests more than ${checks.maxDepth} levels`, issues)
  }
  // cairn's own events are checked by their service (the membership), not by plugins, which may not declare them.
  const own = checks.reserved === true && isReservedType(req.type)
  const checked = (own ? undefined : checks.validate?.(req.type, req.version, req.payload)) ?? { version: req.version ?? 1, issues: [] }
  if (checked.issues.length > 0) {
    const issues = prefix(checked.issues)
    throw new ValidationError(`Cannot publish${which} ${req.type}: ${issues.join('; ')}`, issues)
  }
  const size = new TextEncoder().encode(canonicalJson(req.payload)).length
  if (size + ENVELOPE_ROOM > checks.maxEventSize) {
    throw new EventTooLargeError(`Cannot publish${which} ${req.type}: the event would be over ${checks.maxEventSize} bytes (payload alone is ${size} bytes)`)
  }
  return { request: { ...req, version: checked.version } }
}

/**
 * Checks the size of a batch request.
 *
 * @throws ValidationError for an empty batch, EventTooLargeError for more than `maxBatch` events
 */
export function checkBatch(inputs: readonly unknown[], maxBatch: number): void {
  if (inputs.length === 0) throw new ValidationError('Cannot publish: the batch is empty', ['[]: expected at least one event'])
  if (inputs.length > maxBatch) {
    throw new EventTooLargeError(`Cannot publish ${inputs.length} events in one request: at most ${maxBatch} (the max-batch setting) commit together`)
  }
}
