import type { MiddlewareHandler } from 'hono'
import { errorResponse } from './errors.ts'

/** A request body declared as NDJSON (the streaming publish). */
export const NDJSON = /^application\/x-ndjson\s*(;|$)/i

/** A request body declared as JSON: `application/json`, or a structured `+json` type (`application/ld+json`, `application/vnd.foo+json`). */
const JSON_TYPE = /^application\/([\w.+-]+\+)?json\s*(;|$)/i

/**
 * Refuses, with 415, a request body that is not declared as JSON (`application/json` or any
 * `application/*+json`; an empty body needs no type). Every route that takes a JSON body uses it, so they
 * all answer a wrong type alike, before the body is read.
 */
export const jsonBody: MiddlewareHandler = async (c, next) => {
  const type = c.req.header('content-type') ?? ''
  if (!JSON_TYPE.test(type) && !(type === '' && c.req.header('content-length') === '0')) {
    const hint = NDJSON.test(type) && c.req.path === '/v1/events' ? '; NDJSON (one event per line) goes to POST /v1/events/stream' : ''
    return errorResponse(
      415,
      'unsupported_media_type',
      `Unsupported media type ${type === '' ? '(none)' : type}: send the body as JSON with Content-Type: application/json (or an application/*+json type)${hint}`,
      { headers: { 'accept-post': 'application/json, application/*+json' } }
    )
  }
  await next()
}
