import * as v from 'valibot'
import { StaleCursorError, ValidationError } from '../errors.ts'
import { toIssues } from '../model/issues.ts'
import { rowToEnvelope, type EventRow, type EventsTable } from '../store/events.ts'
import { trace } from '../log/trace.ts'
import { CursorParamSchema, CursorSpaceSchema, readQuery, TypesParamSchema } from './query.ts'

/** What `/v1/stream` reads. */
export interface StreamDeps {
  events: EventsTable
  /** the highest cursor every plugin has processed: the stream shows applied events only */
  watermark: () => number
  /** resolves true when new events may be there, false after `ms` without (or on abort) */
  wait: (signal: AbortSignal, ms: number) => Promise<boolean>
  /** a stream that wrote nothing for this long writes a comment line, so that no idle timer closes it */
  heartbeatMs: number
}

/** The reconnection delay a stream asks EventSource clients for (the SSE `retry:` field, ms). */
export const STREAM_RETRY_MS = 2000

/** Rows read from the table per write. */
const PAGE = 500

/** The query parameters of `GET /v1/stream`. */
export const StreamQuerySchema = v.strictObject({
  after: v.optional(CursorParamSchema),
  types: v.optional(v.pipe(TypesParamSchema, v.description('Only these event types, comma-separated (`a.b,c.d`).'))),
  cursor_space: v.optional(v.pipe(CursorSpaceSchema, v.description('The cursor space `after` belongs to; 409 when the node has another (its database was reset).')))
})

/** @returns an event as the stream and `GET /v1/events` show it: the envelope plus its local cursor and file CID */
export function eventJson(r: EventRow): Record<string, unknown> {
  return { ...rowToEnvelope(r), cursor: r.cursor, cid: r.cid }
}

/**
 * Checks a cursor a consumer resumes from against this database.
 *
 * @throws StaleCursorError beyond the last cursor ever handed out, or for another cursor space
 */
export function assertCursor(events: EventsTable, after: number, space: string | undefined): void {
  const own = events.cursorSpace()
  if (space != null && space !== own) {
    throw new StaleCursorError(
      'cursor_space_mismatch',
      `Cannot resume from cursor ${after} of cursor space ${space}: this node's cursor space is ${own} (its database was reset, or the cursor is another node's); start again from after=0 and skip event_ids already handled`
    )
  }
  const high = events.highWater()
  if (after > high) {
    throw new StaleCursorError(
      'cursor_beyond_end',
      `Cannot resume from cursor ${after}: this node has handed out cursors up to ${high} only (cursor space ${own}); its database was reset or the cursor is another node's; start again from after=0 and skip event_ids already handled`
    )
  }
}

/** @throws ValidationError for a Last-Event-ID that is not a cursor */
function checkedLastEventId(header: string): string {
  const r = v.safeParse(CursorParamSchema, header)
  if (!r.success) throw new ValidationError(`Bad Last-Event-ID header ${JSON.stringify(header.slice(0, 40))}: ${r.issues[0].message}`, toIssues(r.issues, 'Last-Event-ID'))
  return r.output
}

/**
 * `GET /v1/stream`: Server-Sent Events. The response and its first lines go out at once: `retry:`, then a
 * `ready` event (`{cursor_space, after, heartbeat_ms}`). Then one unnamed message per event (so an
 * EventSource's `onmessage` gets it) once every plugin processed it, in cursor order, `id:` its cursor;
 * a `caught-up` event (`{cursor}`) once the backlog is delivered; a `: heartbeat` comment after
 * `heartbeatMs` without a write. A reconnect with `Last-Event-ID` (or `?after=CURSOR`) resumes right after
 * it, with no gap and no repeat, because the table, not memory, is the source. `?types=a,b` filters.
 *
 * @throws ValidationError for a malformed cursor or an unknown parameter; StaleCursorError for a cursor this node cannot resume from
 */
export function streamEvents(request: Request, deps: StreamDeps): Response {
  const q = readQuery(request.url, StreamQuerySchema, Object.keys(StreamQuerySchema.entries))
  const lastEventId = request.headers.get('last-event-id')
  // An EventSource reconnects with the URL it started with and the last id it saw: the header wins.
  const from = Number(lastEventId != null && lastEventId !== '' ? checkedLastEventId(lastEventId) : (q.after ?? 0))
  assertCursor(deps.events, from, q.cursor_space)
  const types = q.types
  const space = deps.events.cursorSpace()
  const encoder = new TextEncoder()
  const abort = new AbortController()
  let cursor = from
  // The watermark up to which every row after `cursor` has been read: rows added later have higher cursors
  // than any handed out, so until the watermark moves there is nothing more to read.
  let readUpTo: number | undefined
  let caughtUp = false
  let wrote = Date.now()
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(encoder.encode(`retry: ${STREAM_RETRY_MS}\nevent: ready\ndata: ${JSON.stringify({ cursor_space: space, after: from, heartbeat_ms: deps.heartbeatMs })}\n\n`))
    },
    async pull(controller) {
      // Each pull writes one chunk: rows, the caught-up marker, or a heartbeat after a quiet wait; or, once
      // the client is gone, ends the body (a pull that wrote nothing would be called again at once).
      const end = (): void => {
        try {
          controller.close()
        } catch {}
      }
      for (;;) {
        if (abort.signal.aborted) return end()
        const upTo = deps.watermark()
        const rows = upTo === readUpTo ? [] : deps.events.list({ after: cursor, upTo, types, limit: PAGE })
        readUpTo = rows.length < PAGE ? upTo : undefined
        let text = rows.map((r) => `id: ${r.cursor}\ndata: ${JSON.stringify(eventJson(r))}\n\n`).join('')
        if (rows.length > 0) {
          cursor = rows[rows.length - 1].cursor
          for (const r of rows) trace('stream.sent', r.seq)
        }
        if (!caughtUp && rows.length < PAGE) {
          caughtUp = true
          text += `event: caught-up\ndata: ${JSON.stringify({ cursor })}\n\n`
        }
        if (text !== '') {
          wrote = Date.now()
          controller.enqueue(encoder.encode(text))
          return
        }
        // Wake-ups without new rows (plugins report progress often) do not count as writes.
        const quiet = deps.heartbeatMs - (Date.now() - wrote)
        if (quiet <= 0 || !(await deps.wait(abort.signal, quiet))) {
          if (abort.signal.aborted) return end()
          wrote = Date.now()
          controller.enqueue(encoder.encode(': heartbeat\n\n'))
          return
        }
      }
    },
    cancel() {
      abort.abort()
    }
  })
  request.signal.addEventListener('abort', () => {
    abort.abort()
  })
  return new Response(body, {
    status: 200,
    headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no', 'cairn-cursor-space': space }
  })
}
