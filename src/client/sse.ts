/** One Server-Sent Events message: its `event` (undefined for an unnamed one), `id` and joined `data` lines. */
export interface SseMessage {
  event?: string
  id?: string
  data: string
  /** the reconnection delay the server last asked for with a `retry:` field (ms), when it did */
  retry?: number
}

/** The longest line kept while parsing: a longer one is a broken or hostile stream. */
const MAX_LINE = 16 * 1024 * 1024

/**
 * Parses a `text/event-stream` body as the WHATWG EventSource does: lines end in CRLF, LF or CR; `:` starts
 * a comment (a heartbeat); a blank line dispatches the message, when it has data.
 *
 * @param body the response body
 * @param signal ends the reading: its abort cancels the body's reader, so a pending read ends at once,
 *   whatever the runtime does with the body of an aborted fetch (Deno does not error it once the Response
 *   is collected)
 * @returns the messages in order, until the body ends
 * @throws Error when a line is longer than 16 MiB; the signal's reason once it aborted
 * @example
 * ```ts
 * for await (const m of readSse(res.body!)) console.log(m.event ?? 'message', m.data)
 * ```
 */
export async function* readSse(body: ReadableStream<Uint8Array>, signal?: AbortSignal): AsyncGenerator<SseMessage> {
  const reader = body.getReader()
  const cancel = (): void => {
    reader.cancel(signal?.reason).catch(() => {})
  }
  signal?.addEventListener('abort', cancel, { once: true })
  const decoder = new TextDecoder()
  let buffer = ''
  let data: string[] = []
  let event: string | undefined
  let id: string | undefined
  let retry: number | undefined
  try {
    for (let done = false; !done; ) {
      signal?.throwIfAborted()
      const chunk = await reader.read()
      signal?.throwIfAborted()
      done = chunk.done
      buffer += done ? '' : decoder.decode(chunk.value, { stream: true })
      let start = 0
      const eol = /\r\n|\r|\n/g
      for (;;) {
        eol.lastIndex = start
        const m = eol.exec(buffer)
        if (m == null) break
        // A CR at the very end may be the first half of a CRLF: wait for the next chunk, unless there is none.
        if (!done && m[0] === '\r' && m.index + 1 === buffer.length) break
        const line = buffer.slice(start, m.index)
        start = m.index + m[0].length
        if (line === '') {
          if (data.length > 0) yield { event, id, data: data.join('\n'), retry }
          data = []
          event = undefined
          continue
        }
        if (line.startsWith(':')) continue
        const colon = line.indexOf(':')
        const field = colon < 0 ? line : line.slice(0, colon)
        const text = colon < 0 ? '' : line.slice(colon + (line[colon + 1] === ' ' ? 2 : 1))
        if (field === 'data') data.push(text)
        else if (field === 'event') event = text
        else if (field === 'id' && !text.includes('\0')) id = text
        else if (field === 'retry' && /^\d+$/.test(text)) retry = Number(text)
      }
      buffer = buffer.slice(start)
      if (buffer.length > MAX_LINE) throw new Error(`Cannot read the event stream: a line is longer than ${MAX_LINE} bytes`)
    }
  } finally {
    signal?.removeEventListener('abort', cancel)
    reader.releaseLock()
    await body.cancel().catch(() => {})
  }
}
