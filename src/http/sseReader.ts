/** One Server-Sent Events message: its `event:` and `id:` fields, and its `data:` lines joined. */
export interface SseMessage {
  event?: string
  id?: string
  data: string
}

/** Reads a `text/event-stream` body to its end, calling `onMessage` for every message in order. */
export async function readSse(body: ReadableStream<Uint8Array>, onMessage: (message: SseMessage) => void): Promise<void> {
  const reader = body.getReader()
  const decoder = new TextDecoder()
  let buffer = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) return
    buffer += decoder.decode(value, { stream: true })
    for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
      const lines = buffer.slice(0, end).split('\n')
      buffer = buffer.slice(end + 2)
      const field = (name: string): string | undefined =>
        lines
          .find((l) => l.startsWith(`${name}:`))
          ?.slice(name.length + 1)
          .trimStart()
      onMessage({
        event: field('event'),
        id: field('id'),
        data: lines
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(5).trimStart())
          .join('\n')
      })
    }
  }
}
