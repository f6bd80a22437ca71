import type { Log } from '../log/logger.ts'
import type { PublishResult } from '../model/publishRequest.ts'
import { errorBody, STATUS_BY_ERROR } from './errors.ts'

/** Room in a stream's line for the request's own fields (type, event_id, actor, ids) beyond the largest event. */
export const STREAM_LINE_ROOM = 4096

/** The bounds of one streaming publish. */
export interface PublishStreamLimits {
  /** a line longer than this many bytes (its newline excluded) is refused as soon as it is that long */
  maxLineBytes: number
  /** lines read whose acknowledgement the client has not yet taken, at most (then the body is not read on) */
  windowLines: number
  /** bytes of such lines, at most (one line is always let in) */
  windowBytes: number
  /** the stream ends when neither a byte of the body arrives nor an acknowledgement is taken for this long */
  idleTimeoutMs: number
}

/** One line in flight: its acknowledgement once settled. */
interface Entry {
  bytes: number
  ack: string | undefined
  settled: Promise<void>
}

const NEWLINE = 0x0a
const encoder = new TextEncoder()

/** @returns the acknowledgement line of a refused or failed line, in the endpoint's one error shape */
function errorAck(line: number, err: Error, log: Log, limits: Record<string, unknown>): string {
  const mapped = STATUS_BY_ERROR[err.name]
  if (mapped == null) {
    // Not thrown on purpose: a bug. The stack goes to the log, the line gets an internal error.
    log.error(`POST /v1/events/stream line ${line} failed: ${err.stack ?? err.message}`, { route: '/v1/events/stream' })
    return `${JSON.stringify({ line, ...errorBody('internal', `line ${line}: Internal error: ${err.message}; the node's log has the details`, [], { status: 500 }) })}\n`
  }
  const e = err as Error & { issues?: []; eventId?: string }
  const extra: Record<string, unknown> = { status: mapped.status }
  if (e.name === 'EventTooLargeError') extra.limits = limits
  if (e.eventId != null) extra.event_id = e.eventId
  return `${JSON.stringify({ line, ...errorBody(mapped.code, `line ${line}: ${err.message}`, e.issues ?? [], extra) })}\n`
}

/** A refusal of a line that never reached a publish (too long, not JSON, not one object). */
function refusal(line: number, status: number, code: string, message: string, extra: Record<string, unknown> = {}): string {
  return `${JSON.stringify({ line, ...errorBody(code, `line ${line}: ${message}`, [], { status, ...extra }) })}\n`
}

/**
 * Serves a streaming publish: the request body is NDJSON, one publish request per line (what
 * `POST /v1/events` takes as one event); the response is NDJSON, one acknowledgement per non-blank line,
 * in order, each written only once `publish` resolved (the event is durable) or refused it. Lines read
 * while a commit is written join the next one (the commit queue groups them).
 *
 * Bounded: a line is refused once it is longer than `maxLineBytes` (the rest of it is skipped, never
 * kept); at most `windowLines` lines (and `windowBytes` bytes of them) are in flight between being read
 * and their acknowledgement being taken by the client, after which the body is not read on
 * (backpressure through TCP). A client that goes away stops the reading; what was already handed to
 * `publish` commits whole or not at all (each event is one commit's), and a retry under the same
 * `event_id` replays it.
 *
 * @returns the streamed response (200, application/x-ndjson)
 */
export function publishStream(
  body: ReadableStream<Uint8Array> | null,
  publish: (input: unknown) => Promise<PublishResult>,
  limits: PublishStreamLimits,
  log: Log,
  reported: Record<string, unknown>
): Response {
  const window: Entry[] = []
  let windowBytes = 0
  let readDone = body == null
  let cancelled = false
  let wakeWriter: (() => void) | undefined
  let wakeReader: (() => void) | undefined
  let lastProgress = Date.now()
  let idle: ReturnType<typeof setTimeout> | undefined
  const reader = body?.getReader()
  const decoder = new TextDecoder('utf-8', { fatal: true })
  let controller: ReadableStreamDefaultController<Uint8Array> | undefined

  const wake = (): void => {
    wakeWriter?.()
    wakeWriter = undefined
  }
  const push = (entry: Entry): void => {
    window.push(entry)
    windowBytes += entry.bytes
    wake()
  }
  const settledAck = (ack: string, bytes = 0): Entry => ({ bytes, ack, settled: Promise.resolve() })
  const full = (): boolean => window.length >= limits.windowLines || (window.length > 0 && windowBytes >= limits.windowBytes)

  const stopReading = (): void => {
    if (readDone) return
    readDone = true
    void reader?.cancel().catch(() => {})
    wake()
    wakeReader?.()
    wakeReader = undefined
  }
  // Fires idleTimeoutMs after the last progress: woken earlier (there was progress since it was set), it
  // waits out only the rest, not a whole timeout again.
  const armIdle = (delay = limits.idleTimeoutMs): void => {
    idle = setTimeout(() => {
      const quiet = Date.now() - lastProgress
      if (quiet < limits.idleTimeoutMs) {
        armIdle(limits.idleTimeoutMs - quiet)
        return
      }
      idle = undefined
      log.info(`publish stream closed: nothing read or acknowledged for ${quiet} ms`, { reason: 'publish_stream_idle' })
      stopReading()
      // A client that takes no acknowledgements holds them here: the connection goes; what was handed to publish still commits.
      if (window.length > 0) {
        cancelled = true
        try {
          controller?.error(new Error('idle'))
        } catch {}
      }
    }, delay)
  }

  /** Publishes one complete line (its bytes without the newline). */
  const line = (n: number, bytes: Uint8Array): void => {
    let text: string
    try {
      text = decoder.decode(bytes)
    } catch {
      push(settledAck(refusal(n, 400, 'malformed_json', 'Malformed JSON: the line is not UTF-8'), bytes.length))
      return
    }
    let input: unknown
    try {
      input = JSON.parse(text)
    } catch (err) {
      push(settledAck(refusal(n, 400, 'malformed_json', `Malformed JSON: ${(err as Error).message}`), bytes.length))
      return
    }
    if (input === null || typeof input !== 'object' || Array.isArray(input)) {
      push(settledAck(refusal(n, 400, 'invalid_request', 'a line is one publish request object ({ type, payload, ... }); send a batch as one line per event'), bytes.length))
      return
    }
    const entry: Entry = { bytes: bytes.length, ack: undefined, settled: Promise.resolve() }
    entry.settled = publish(input).then(
      (r) => {
        entry.ack = `${JSON.stringify({ line: n, event_id: r.event_id, seq: r.seq, cid: r.cid, replayed: r.replayed })}\n`
      },
      (err: Error) => {
        entry.ack = errorAck(n, err, log, reported)
      }
    )
    push(entry)
  }

  const read = async (): Promise<void> => {
    if (reader == null) return
    let parts: Uint8Array[] = []
    let partLength = 0
    let skipping = false
    let n = 0
    const take = (tail: Uint8Array): Uint8Array => {
      if (parts.length === 0) return tail
      const out = new Uint8Array(partLength + tail.length)
      let o = 0
      for (const p of parts) {
        out.set(p, o)
        o += p.length
      }
      out.set(tail, o)
      parts = []
      partLength = 0
      return out
    }
    const complete = (bytes: Uint8Array): void => {
      n++
      // Blank lines (and a trailing \r) are allowed and take a number, but get no acknowledgement.
      let end = bytes.length
      if (end > 0 && bytes[end - 1] === 0x0d) end--
      let blank = true
      for (let i = 0; i < end && blank; i++) blank = bytes[i] === 0x20 || bytes[i] === 0x09
      if (!blank) line(n, end === bytes.length ? bytes : bytes.subarray(0, end))
    }
    const tooLong = (): void => {
      n++
      push(settledAck(refusal(n, 413, 'too_large', `the line is over ${limits.maxLineBytes} bytes (max_event_bytes + ${STREAM_LINE_ROOM}); the rest of it is skipped`, { limits: reported })))
    }
    try {
      while (!readDone) {
        const r = await reader.read()
        if (r.done) break
        lastProgress = Date.now()
        const chunk = r.value
        let start = 0
        while (start <= chunk.length) {
          const nl = chunk.indexOf(NEWLINE, start)
          if (nl === -1) {
            const rest = chunk.length - start
            if (!skipping && rest > 0) {
              if (partLength + rest > limits.maxLineBytes) {
                parts = []
                partLength = 0
                skipping = true
                tooLong()
              } else {
                parts.push(chunk.slice(start))
                partLength += rest
              }
            }
            break
          }
          if (skipping) {
            skipping = false
          } else if (partLength + (nl - start) > limits.maxLineBytes) {
            parts = []
            partLength = 0
            tooLong()
          } else {
            complete(take(chunk.subarray(start, nl)))
          }
          start = nl + 1
          // Backpressure: the body is read on only once the client took acknowledgements.
          while (full() && !readDone) await new Promise<void>((resolve) => (wakeReader = resolve))
          if (readDone) return
        }
      }
      if (!skipping && partLength > 0) complete(take(new Uint8Array(0)))
    } catch {
      // The client went away (or its body broke): what was read is still acknowledged if it can be.
    } finally {
      readDone = true
      wake()
    }
  }

  const stream = new ReadableStream<Uint8Array>(
    {
      start(c) {
        controller = c
        armIdle()
        void read()
      },
      async pull(c) {
        while (window.length === 0) {
          if (readDone || cancelled) {
            if (idle != null) clearTimeout(idle)
            if (!cancelled) c.close()
            return
          }
          await new Promise<void>((resolve) => (wakeWriter = resolve))
        }
        await window[0].settled
        let out = ''
        while (window.length > 0 && window[0].ack != null) {
          const e = window.shift()!
          windowBytes -= e.bytes
          out += e.ack
        }
        lastProgress = Date.now()
        wakeReader?.()
        wakeReader = undefined
        if (!cancelled) c.enqueue(encoder.encode(out))
      },
      cancel() {
        cancelled = true
        if (idle != null) clearTimeout(idle)
        stopReading()
      }
    },
    { highWaterMark: 1 }
  )
  return new Response(stream, { status: 200, headers: { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' } })
}
