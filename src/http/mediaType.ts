import type { Context, MiddlewareHandler } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { errorResponse } from './errors.ts'

/** A request body declared as NDJSON (the streaming publish). */
export const NDJSON = /^application\/x-ndjson\s*(;|$)/i

/** A request body declared as JSON: `application/json`, or a structured `+json` type (`application/ld+json`, `application/vnd.foo+json`). */
const JSON_TYPE = /^application\/([\w.+-]+\+)?json\s*(;|$)/i

/**
 * The 415 answer to a request body sent with a content coding (`Content-Encoding: gzip`): the node reads
 * bodies as they are and decompresses none, so such a body would only fail later as malformed JSON.
 *
 * @returns the answer, or undefined for a body without Content-Encoding or with `identity` only
 */
export function unsupportedEncoding(c: Context): Response | undefined {
  const header = c.req.header('content-encoding')
  if (header == null) return undefined
  const codings = header
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '')
  if (codings.every((e) => e.toLowerCase() === 'identity')) return undefined
  return errorResponse(415, 'unsupported_encoding', `Unsupported content encoding ${codings.join(', ')}: send the body uncompressed, without Content-Encoding (the node decodes no content coding)`, {
    headers: { 'accept-encoding': 'identity' }
  })
}

/**
 * Refuses, with 415, a request body that is not declared as JSON (`application/json` or any
 * `application/*+json`; an empty body needs no type). Every route that takes a JSON body uses it, so they
 * all answer a wrong type alike, before the body is read. A body with a content coding is refused first
 * (unsupportedEncoding).
 */
export const jsonBody: MiddlewareHandler = async (c, next) => {
  const encoded = unsupportedEncoding(c)
  if (encoded != null) return encoded
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

/** Refuses bytes that are not UTF-8 instead of reading them as U+FFFD. */
const utf8 = new TextDecoder('utf-8', { fatal: true })

/**
 * Reads a request body as one JSON text. Its bytes must be UTF-8, checked strictly: a lenient read would
 * store each bad byte as U+FFFD, and two different bodies alike.
 *
 * @param empty what an empty body stands for; without it, an empty body is malformed JSON
 * @returns the parsed body
 * @throws HTTPException with the 400 `malformed_json` answer, naming the problem (as the streaming publish names a line's)
 */
export async function readJson(c: Context, empty?: unknown): Promise<unknown> {
  // bodyLimit has already answered a body over its route's limit (413).
  const bytes = await c.req.arrayBuffer()
  let text: string
  try {
    text = utf8.decode(bytes)
  } catch {
    const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(c.req.header('content-type') ?? '')?.[1]
    const said = charset == null || /^utf-?8$/i.test(charset) ? '' : ` (its Content-Type says charset=${charset}: JSON is read as UTF-8 only)`
    throw new HTTPException(400, { res: errorResponse(400, 'malformed_json', `Malformed JSON: the body is not UTF-8${said}`) })
  }
  if (text === '' && empty !== undefined) return empty
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new HTTPException(400, { res: errorResponse(400, 'malformed_json', `Malformed JSON: ${(err as Error).message}`) })
  }
}
