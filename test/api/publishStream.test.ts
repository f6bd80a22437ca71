import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { CairnClient, type PublishInput, type PublishStreamItem } from '../../src/client/mod.ts'
import { publishStream } from '../../src/http/publishStream.ts'
import { silentLog } from '../../src/log/logger.ts'
import { withApiNode } from '../helpers/forge.ts'
import { query } from '../helpers/db.ts'
import { NodeProcess, ROOT, tempDir, waitFor } from '../helpers/process.ts'

interface Ack {
  line: number
  event_id?: string
  seq?: number
  cid?: string
  replayed?: boolean
  error?: { code: string; message: string; status: number; issues: unknown[]; event_id?: string }
}

const encoder = new TextEncoder()

/** A streaming publish the test writes into line by line and reads acknowledgements from as they come. */
class Stream {
  private push!: ReadableStreamDefaultController<Uint8Array>
  private readonly reader: Promise<ReadableStreamDefaultReader<Uint8Array>>
  private buffered = ''
  readonly abort = new AbortController()
  readonly response: Promise<Response>

  constructor(base: string, token: string) {
    const body = new ReadableStream<Uint8Array>({
      start: (c) => {
        this.push = c
      }
    })
    this.response = fetch(`${base}/v1/events/stream`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
      body,
      duplex: 'half',
      signal: this.abort.signal
    } as RequestInit)
    this.reader = this.response.then((r) => {
      if (r.status !== 200) throw new Error(`status ${r.status}`)
      return r.body!.getReader()
    })
  }

  write(text: string): void {
    this.push.enqueue(encoder.encode(text))
  }

  end(): void {
    this.push.close()
  }

  /** @returns the next acknowledgement, or undefined when the response ended */
  async ack(): Promise<Ack | undefined> {
    const reader = await this.reader
    for (;;) {
      const nl = this.buffered.indexOf('\n')
      if (nl !== -1) {
        const line = this.buffered.slice(0, nl)
        this.buffered = this.buffered.slice(nl + 1)
        return JSON.parse(line) as Ack
      }
      const r = await reader.read()
      if (r.done) return undefined
      this.buffered += new TextDecoder().decode(r.value)
    }
  }
}

const event = (i: number, extra: Record<string, unknown> = {}): string => `${JSON.stringify({ type: 'test.streamed', payload: { i }, event_id: `s-${i}`, ...extra })}\n`

const outboxRow = (dir: string, eventId: string): { seq: number } | undefined => query<{ seq: number }>(dir, 'SELECT seq FROM outbox WHERE event_id = ?', [eventId])[0]

describe('POST /v1/events/stream', () => {
  test('acknowledges each line in order, each only once its event is committed', async () => {
    await withApiNode({}, async (_node, base, token, dir) => {
      const s = new Stream(base, token)
      for (let i = 1; i <= 300; i++) s.write(event(i))
      s.end()
      const seqs: number[] = []
      for (let i = 1; i <= 300; i++) {
        const ack = (await s.ack())!
        expect(ack.line).toBe(i)
        expect(ack.replayed).toBe(false)
        // Read from another connection at once: the commit is on disk before its acknowledgement is written.
        expect(outboxRow(dir, ack.event_id!)?.seq).toBe(ack.seq!)
        seqs.push(ack.seq!)
      }
      expect(await s.ack()).toBeUndefined()
      expect(seqs).toEqual(seqs.map((_, i) => seqs[0] + i))
      // The events are what GET /v1/events shows (once the plugins processed them).
      await waitFor('the events to be listed', async () => {
        const page = (await (await fetch(`${base}/v1/events?type=test.streamed&limit=1000`, { headers: { authorization: `Bearer ${token}` } })).json()) as { events: unknown[] }
        return page.events.length === 300
      })
    })
  }, 60_000)

  test('answers a bad line with its error and goes on; a repeated key replays; a reused key is refused', async () => {
    await withApiNode({}, async (_node, base, token) => {
      const s = new Stream(base, token)
      s.write(event(1))
      s.write('{"type": "test.streamed", "payload": \n')
      s.write(`${JSON.stringify({ type: 'Bad', payload: 1, extra: true })}\n`)
      s.write('[1, 2]\n')
      s.write('\n')
      s.write(event(1))
      s.write(event(1, { payload: { other: true } }))
      s.write(event(2).trimEnd())
      s.end()
      const acks: Ack[] = []
      for (let a = await s.ack(); a != null; a = await s.ack()) acks.push(a)
      expect(acks.map((a) => [a.line, a.error?.code ?? 'ok', a.error?.status])).toEqual([
        [1, 'ok', undefined],
        [2, 'malformed_json', 400],
        [3, 'invalid_request', 400],
        [4, 'invalid_request', 400],
        [6, 'ok', undefined],
        [7, 'idempotency_key_reused', 409],
        [8, 'ok', undefined]
      ])
      expect(acks[1].error!.message).toStartWith('line 2: Malformed JSON')
      expect(acks[2].error!.issues.length).toBeGreaterThan(0)
      expect([acks[4].replayed, acks[4].seq, acks[4].event_id]).toEqual([true, acks[0].seq, acks[0].event_id])
      expect(acks[5].error!.event_id).toBe(acks[0].event_id!)
      expect(acks[6].seq).toBe(acks[0].seq! + 1)
    })
  }, 60_000)

  test('refuses an over-long line as soon as it is too long, skips the rest of it, and goes on', async () => {
    await withApiNode({ 'max-event-size': '4KiB' }, async (_node, base, token) => {
      const limits = (await (await fetch(`${base}/v1/limits`, { headers: { authorization: `Bearer ${token}` } })).json()) as { publish_stream_line_bytes: number }
      expect(limits.publish_stream_line_bytes).toBe(4096 + 4096)
      const s = new Stream(base, token)
      s.write(event(1))
      // Longer than a line may be, and not ended: its refusal comes while the line is still being sent.
      s.write(`{"type":"test.streamed","payload":"${'x'.repeat(limits.publish_stream_line_bytes)}`)
      expect((await s.ack())!.line).toBe(1)
      const refused = (await s.ack())!
      expect([refused.line, refused.error?.code, refused.error?.status]).toEqual([2, 'too_large', 413])
      s.write(`${'y'.repeat(100_000)}"}\n`)
      s.write(event(3))
      s.end()
      const after = (await s.ack())!
      expect([after.line, after.error?.code ?? 'ok']).toEqual([3, 'ok'])
      expect(await s.ack()).toBeUndefined()
    })
  }, 60_000)

  test('a client that disconnects mid-stream loses nothing acknowledged and leaves no half-done event', async () => {
    await withApiNode({}, async (_node, base, token, dir) => {
      const s = new Stream(base, token)
      for (let i = 1; i <= 2000; i++) s.write(event(i))
      const acked: Ack[] = []
      while (acked.length < 50) acked.push((await s.ack())!)
      s.abort.abort()
      await s.response.catch(() => {})
      // What was handed to the commit queue commits whole, maybe still now: these hold between any two commits.
      for (const a of acked) expect(outboxRow(dir, a.event_id!)?.seq).toBe(a.seq!)
      const rows = query<{ seq: number; idempotency_key: string }>(dir, 'SELECT seq, idempotency_key FROM outbox ORDER BY seq')
      expect(rows.map((r) => r.seq)).toEqual(rows.map((_, i) => i + 1))
      expect(new Set(rows.map((r) => r.idempotency_key)).size).toBe(rows.length)
      const [both] = query<{ outbox: number; events: number }>(dir, "SELECT (SELECT count(*) FROM outbox) AS outbox, (SELECT count(*) FROM events WHERE type = 'test.streamed') AS events")
      expect(both.events).toBe(both.outbox)
      // Sent again under the same keys: what committed replays, the rest is published once.
      const again = new Stream(base, token)
      for (let i = 1; i <= 2000; i++) again.write(event(i))
      again.end()
      const acks: Ack[] = []
      for (let a = await again.ack(); a != null; a = await again.ack()) acks.push(a)
      expect(acks.length).toBe(2000)
      for (const a of acked) expect(acks[a.line - 1]).toEqual({ ...a, replayed: true })
      expect(acks.filter((a) => a.replayed).length).toBeGreaterThanOrEqual(rows.length)
      expect(query<{ n: number }>(dir, 'SELECT count(*) AS n FROM outbox')[0].n).toBe(2000)
    })
  }, 120_000)

  test('a stream that sends nothing and takes nothing for --http-idle-timeout is ended; one that is busy for longer is not', async () => {
    await withApiNode({ 'http-idle-timeout': '1s' }, async (_node, base, token) => {
      const s = new Stream(base, token)
      s.write(event(1))
      expect((await s.ack())?.line).toBe(1)
      // Lines keep coming for longer than the idle timeout: each acknowledgement is progress.
      const started = Date.now()
      let n = 1
      while (Date.now() - started < 2500) {
        s.write(event(++n))
        expect((await s.ack())?.line).toBe(n)
      }
      // Then silence: the node ends the response (the client's body is still open).
      expect(await s.ack()).toBeUndefined()
    })
  }, 60_000)

  test('refuses a body that is not NDJSON and an Idempotency-Key header; POST /v1/events names the stream for NDJSON', async () => {
    await withApiNode({}, async (_node, base, token) => {
      const auth = { authorization: `Bearer ${token}` }
      const json = await fetch(`${base}/v1/events/stream`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: event(1) })
      expect([json.status, ((await json.json()) as Ack).error?.code]).toEqual([415, 'unsupported_media_type'])
      const keyed = await fetch(`${base}/v1/events/stream`, { method: 'POST', headers: { ...auth, 'content-type': 'application/x-ndjson', 'idempotency-key': 'k' }, body: event(1) })
      expect([keyed.status, ((await keyed.json()) as Ack).error?.code]).toEqual([400, 'invalid_request'])
      const ndjson = await fetch(`${base}/v1/events`, { method: 'POST', headers: { ...auth, 'content-type': 'application/x-ndjson' }, body: event(1) })
      expect(ndjson.status).toBe(415)
      expect(((await ndjson.json()) as Ack).error?.message).toContain('POST /v1/events/stream')
    })
  }, 60_000)

  test('the client publishes an async iterable and yields each result or refusal in order', async () => {
    await withApiNode({}, async (_node, base, token) => {
      const client = new CairnClient({ baseUrl: base, token })
      async function* events(): AsyncGenerator<PublishInput> {
        for (let i = 0; i < 500; i++) yield i === 7 ? { type: 'Bad', payload: i } : { type: 'test.client', payload: { i } }
      }
      const items = []
      for await (const item of client.publishStream(events(), { idempotencyKey: 'run-1' })) items.push(item)
      expect(items.map((x) => x.index)).toEqual(items.map((_, i) => i))
      expect(items[7].error?.code).toBe('invalid_request')
      expect(items.filter((x) => x.result?.replayed === false).length).toBe(499)
      // The same call again (the same key) publishes nothing.
      const again = []
      for await (const item of client.publishStream(events(), { idempotencyKey: 'run-1' })) again.push(item)
      expect(again.filter((x) => x.result?.replayed === true).map((x) => x.result!.seq)).toEqual(items.filter((x) => x.result != null).map((x) => x.result!.seq))
    })
  }, 60_000)

  test('the client sends what was not acknowledged again after the node is killed mid-stream: every event once', async () => {
    using tmp = tempDir()
    await using node = await NodeProcess.init(tmp.path, 'n')
    // A window of 50: the client is at most 50 events ahead of the acknowledgements it has yielded.
    await node.start(['--max-batch', '50'])
    const client = new CairnClient({ dataDir: node.dir, retryForMs: 60_000, maxDelayMs: 300 })
    const total = 3000
    function* events(): Generator<PublishInput> {
      for (let i = 0; i < total; i++) yield { type: 'test.restart', payload: { i } }
    }
    const items: PublishStreamItem[] = []
    for await (const item of client.publishStream(events(), { idempotencyKey: 'restart' })) {
      items.push(item)
      // Killed with at most 550 events sent: the rest can only go over a new connection to the new process.
      if (items.length === 500) {
        await node.stop('SIGKILL')
        await node.start(['--max-batch', '50'])
      }
    }
    expect(items.map((x) => x.index)).toEqual(items.map((_, i) => i))
    expect(items.filter((x) => x.error != null).map((x) => x.error!.message)).toEqual([])
    const seqs = items.map((x) => x.result!.seq)
    expect(new Set(seqs).size).toBe(total)
    const [row] = query<{ n: number; keys: number }>(node.dir, 'SELECT count(*) AS n, count(DISTINCT idempotency_key) AS keys FROM outbox')
    expect(row).toEqual({ n: total, keys: total })
  }, 120_000)

  test('the plain-fetch example of docs/api.md runs under Node and Bun', async () => {
    await withApiNode({}, async (_node, _base, _token, dir) => {
      for (const [runtime, type] of [
        ['node', 'test.node'],
        [process.execPath, 'test.bun']
      ]) {
        const p = Bun.spawn([runtime, join(ROOT, 'examples', 'backend', 'publish-stream.mjs'), dir, '250', type], { stdout: 'pipe', stderr: 'pipe' })
        const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited])
        expect({ runtime, code, out: out.trim(), err }).toEqual({ runtime, code: 0, out: '250 published', err: '' })
      }
    })
  }, 60_000)
})

describe('publishStream idle timeout', () => {
  test('ends the stream its idle timeout after the last line read and acknowledgement taken, not up to twice that', async () => {
    const idleTimeoutMs = 1000
    let push!: ReadableStreamDefaultController<Uint8Array>
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        push = c
      }
    })
    const res = publishStream(
      body,
      async () => ({ event_id: '0190a000-0000-7000-8000-000000000000', seq: 1, cid: 'x', replayed: false }),
      { maxLineBytes: 1024, windowLines: 16, windowBytes: 1 << 20, idleTimeoutMs },
      silentLog,
      {}
    )
    const reader = res.body!.getReader()
    // One line right after the stream's start, its acknowledgement taken: progress just after the timer was
    // set, so a timer that waited a whole timeout again when it found progress closed at about twice the setting.
    push.enqueue(encoder.encode(event(1)))
    const ack = await reader.read()
    const lastProgress = Date.now()
    expect(JSON.parse(new TextDecoder().decode(ack.value)).line).toBe(1)
    expect((await reader.read()).done).toBe(true)
    const quiet = Date.now() - lastProgress
    expect({ quiet, early: quiet < idleTimeoutMs - 100, late: quiet > 1.5 * idleTimeoutMs }).toEqual({ quiet, early: false, late: false })
  })
})

describe('publishStream backpressure', () => {
  test('reads at most the window ahead of the acknowledgements the client took', async () => {
    const window = 16
    let read = 0
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (read === 1000) {
          c.close()
          return
        }
        read++
        c.enqueue(encoder.encode(event(read)))
      }
    })
    let published = 0
    const res = publishStream(
      body,
      async () => {
        published++
        return { event_id: '0190a000-0000-7000-8000-000000000000', seq: published, cid: 'x', replayed: false }
      },
      { maxLineBytes: 1024, windowLines: window, windowBytes: 1 << 20, idleTimeoutMs: 60_000 },
      silentLog,
      {}
    )
    const reader = res.body!.getReader()
    let taken = 0
    for (;;) {
      // One chunk of the body and one of acknowledgements may be in transit besides the window.
      expect(read - taken).toBeLessThanOrEqual(window + 2)
      const r = await reader.read()
      if (r.done) break
      taken += new TextDecoder().decode(r.value).split('\n').length - 1
    }
    expect([taken, published]).toEqual([1000, 1000])
  })
})
