import type { Context } from 'hono'
import { streamSSE } from 'hono/streaming'
import { rowToEnvelope, type EventsTable } from '../store/events.ts'
import { trace } from '../log/trace.ts'

export interface StreamDeps {
  events: EventsTable
  /** the highest cursor every plugin has processed: the stream shows applied events only */
  watermark: () => number
  /** resolves true when new events may be there, false on a heartbeat timeout (or abort) */
  wait: (signal: AbortSignal) => Promise<boolean>
  /** a stream that wrote nothing for this long writes a heartbeat, however often `wait` woke it (default 15 s) */
  heartbeatMs?: number
}

/**
 * `GET /v1/stream`: Server-Sent Events, one per envelope in the events table once every plugin processed it, in arrival order.
 * `id:` is the event's cursor; a reconnect with `Last-Event-ID` (or `?after=CURSOR`) resumes right after
 * it, with no gap and no repeat, because the table, not memory, is the source. `?types=a,b` filters.
 */
export function streamEvents(c: Context, deps: StreamDeps): Response {
  const types = (c.req.query('types') ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '')
  const from = c.req.header('last-event-id') ?? c.req.query('after') ?? '0'
  let cursor = /^\d+$/.test(from) ? Number(from) : 0
  return streamSSE(c, async (stream) => {
    const abort = new AbortController()
    stream.onAbort(() => {
      abort.abort()
    })
    const heartbeatMs = deps.heartbeatMs ?? 15_000
    let wrote = Date.now()
    while (!abort.signal.aborted) {
      const rows = deps.events.list({ after: cursor, upTo: deps.watermark(), types: types.length > 0 ? types : undefined, limit: 500 })
      if (rows.length > 0) {
        // One write for the whole batch (writeSSE's format: the JSON has no line breaks, so one data line each)
        await stream.write(rows.map((r) => `event: event\ndata: ${JSON.stringify({ ...rowToEnvelope(r), cursor: r.cursor, cid: r.cid })}\nid: ${r.cursor}\n\n`).join(''))
        cursor = rows[rows.length - 1].cursor
        wrote = Date.now()
        for (const r of rows) trace('stream.sent', r.seq)
      }
      if (rows.length === 500) continue
      // A heartbeat only when the stream was quiet for heartbeatMs: it keeps proxies and idle timers from
      // closing it. Wake-ups without new rows (plugins report progress often) do not count as writes.
      if (((await deps.wait(abort.signal)) && Date.now() - wrote < heartbeatMs) || abort.signal.aborted) continue
      wrote = Date.now()
      await stream.writeSSE({ event: 'heartbeat', data: String(cursor) }).catch(() => {
        abort.abort()
      })
    }
  })
}
