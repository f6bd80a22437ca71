import * as v from 'valibot'
import { ValidationError } from '../errors.ts'
import { EventTypeSchema } from '../model/envelope.ts'
import { issueLine, toIssues } from '../model/issues.ts'

/** The largest cursor: a cursor is a JSON number, exact up to 2^53 - 1. */
export const MAX_CURSOR = Number.MAX_SAFE_INTEGER

/**
 * A cursor as a query parameter (or Last-Event-ID): a whole number from 0 (the start) to MAX_CURSOR, in
 * decimal digits. Leading zeros are taken (`05` is 5): the value is what counts, and no two cursors share
 * one. A cursor beyond what this node handed out passes here and is answered 409 (cursor_beyond_end).
 */
export const CursorParamSchema = v.pipe(
  v.string(),
  v.regex(/^\d+$/, `Expected a cursor: a whole number from 0 to ${MAX_CURSOR}, in decimal digits, as an event's "cursor" (its SSE id) carries`),
  v.check((s) => !/^\d+$/.test(s) || Number(s) <= MAX_CURSOR, `Expected a cursor of at most ${MAX_CURSOR} (2^53 - 1, the largest a cursor can be)`),
  v.description(`A position in this node's event order: 0 for the start, or the \`cursor\` (SSE \`id\`) of the last event handled; a whole number up to ${MAX_CURSOR}.`)
)

/** At most this many types in one `types` filter. */
export const MAX_TYPES = 64

/** A comma-separated list of event types. */
export const TypesParamSchema = v.pipe(
  v.string(),
  v.transform((s) => s.split(',').map((t) => t.trim())),
  v.maxLength(MAX_TYPES, `Expected at most ${MAX_TYPES} types`),
  v.array(EventTypeSchema)
)

/** The id of a node's cursor space, as `ready` and `GET /v1/events` report it. */
export const CursorSpaceSchema = v.pipe(v.string(), v.regex(/^[0-9a-f]{32}$/, 'Expected a cursor space id: 32 lowercase hex digits'))

/**
 * Reads a request's query string against a strict object schema of string parameters: a parameter the
 * route does not know, a repeated one or a bad value is refused, naming it.
 *
 * @returns the parsed parameters
 * @throws ValidationError listing every bad parameter
 */
export function readQuery<S extends v.GenericSchema<Record<string, string>, Record<string, unknown>>>(url: string, schema: S, known: readonly string[]): v.InferOutput<S> {
  const params = new URL(url).searchParams
  const raw: Record<string, string> = {}
  const repeated: string[] = []
  for (const [k, value] of params) {
    if (k in raw) repeated.push(k)
    raw[k] = value
  }
  const r = v.safeParse(schema, raw)
  const issues = [
    ...repeated.map((k) => ({ path: k, message: 'is given more than once', code: 'repeated_parameter' })),
    ...(r.success
      ? []
      : toIssues(r.issues).map((i) => (i.code === 'unknown_field' ? { path: i.path, message: `is not a parameter of this route (known: ${known.join(', ')})`, code: 'unknown_parameter' } : i)))
  ]
  if (issues.length > 0 || !r.success) {
    throw new ValidationError(`Bad query: ${issues.map(issueLine).join('; ')}`, issues)
  }
  return r.output
}
