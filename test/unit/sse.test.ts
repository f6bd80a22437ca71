import { describe, expect, test } from 'bun:test'
import { readSse } from '../../src/client/sse.ts'

/** @returns a body that delivers `chunks` one by one */
function body(chunks: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder()
  return new ReadableStream({
    start(controller) {
      for (const c of chunks) controller.enqueue(encoder.encode(c))
      controller.close()
    }
  })
}

async function parse(chunks: string[]): Promise<unknown[]> {
  const out: unknown[] = []
  for await (const m of readSse(body(chunks))) out.push(m)
  return out
}

describe('readSse', () => {
  test('reads messages as an EventSource does: any line ending, split anywhere, comments skipped, data lines joined', async () => {
    const stream = 'retry: 2000\nevent: ready\ndata: {"a":1}\n\n: heartbeat\n\nid: 7\r\ndata: one\r\ndata:two\r\r\nevent: caught-up\rdata: {"cursor":7}\r\r'
    const expected = [
      { event: 'ready', id: undefined, data: '{"a":1}', retry: 2000 },
      { event: undefined, id: '7', data: 'one\ntwo', retry: 2000 },
      { event: 'caught-up', id: '7', data: '{"cursor":7}', retry: 2000 }
    ]
    expect(await parse([stream])).toEqual(expected)
    // Byte by byte, a CRLF split between chunks included, it reads the same.
    expect(await parse([...stream])).toEqual(expected)
  })

  test('a block without data dispatches nothing, and an unfinished message at the end is dropped', async () => {
    expect(await parse(['event: x\n\nid: 3\n\n: c\n\ndata: unfinished'])).toEqual([])
  })
})
