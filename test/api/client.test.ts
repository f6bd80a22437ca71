import { describe, expect, test } from 'bun:test'
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Subprocess } from 'bun'
import type * as v from 'valibot'
import { CairnApiError, CairnClient, CairnUnavailableError, type CairnEvent, type EventsPage, type Limits, type PublishInput, type PublishResult } from '../../src/client/mod.ts'
import type { EventSchema, EventsPageSchema, LimitsSchema } from '../../src/http/schemas.ts'
import type { PublishRequestSchema, PublishResultSchema } from '../../src/model/publishRequest.ts'
import { NodeProcess, ROOT, tempDir, waitFor } from '../helpers/process.ts'
import { query } from '../helpers/db.ts'
import { withApiNode } from '../helpers/forge.ts'

/** The consumer of docs/api.md, run under Node with the client the package exports (dist/client.mjs). */
const CONSUMER = join(ROOT, 'examples', 'backend', 'consumer.mjs')

const lines = (file: string): Array<{ producer: string; event_id: string; cursor: number }> =>
  existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l))
    : []

describe('the typed client', () => {
  test('a consumer on the client survives SIGKILL of itself and of the node: 1,000 events, 0 repeats, 0 missing', async () => {
    using tmp = tempDir()
    await using node = await NodeProcess.init(tmp.path, 'n')
    await node.start()
    if (!existsSync(join(ROOT, 'dist', 'client.mjs'))) throw new Error('dist/client.mjs is missing: run npm run build first (npm test does)')
    const out = join(tmp.path, 'handled.jsonl')
    let consumer: Subprocess | undefined
    const startConsumer = (): void => {
      consumer = Bun.spawn(['node', CONSUMER, node.dir, out, 'test.consume'], { stdout: 'inherit', stderr: 'ignore' })
    }
    const producer = new CairnClient({ dataDir: node.dir, retryForMs: 60_000, maxDelayMs: 500 })
    const batch = async (b: number): Promise<unknown> =>
      await producer.publishBatch(
        Array.from({ length: 100 }, (_, k) => ({ type: 'test.consume', payload: { i: b * 100 + k } })),
        { idempotencyKey: `batch-${b}` }
      )
    try {
      startConsumer()
      for (let b = 0; b < 3; b++) await batch(b)
      await waitFor('the consumer to handle 200 events', () => lines(out).length >= 200, 60_000)
      consumer!.kill('SIGKILL')
      await consumer!.exited
      for (let b = 3; b < 6; b++) await batch(b)
      startConsumer()
      await waitFor('the consumer to handle 500 events', () => lines(out).length >= 500, 60_000)
      // The node dies with a batch in flight: the producer retries it with the same key once it is back,
      // at the same address (chosen with port 0 the first time).
      const address = node.http
      const inFlight = batch(6)
      await node.stop('SIGKILL')
      await node.start()
      expect(node.http).toBe(address)
      await inFlight
      await batch(7)
      await waitFor('the consumer to handle 700 events', () => lines(out).length >= 700, 60_000)
      consumer!.kill('SIGKILL')
      await consumer!.exited
      await node.stop('SIGKILL')
      await node.start()
      startConsumer()
      for (let b = 8; b < 10; b++) await batch(b)
      await waitFor('the consumer to handle 1000 events', () => lines(out).length >= 1000, 120_000)
    } finally {
      consumer?.kill('SIGKILL')
    }
    // An event is its (producer, event_id), as the consumer writes it.
    const handled = lines(out).map((l) => `${l.producer} ${l.event_id}`)
    const counts = new Map<string, number>()
    for (const id of handled) counts.set(id, (counts.get(id) ?? 0) + 1)
    const repeats = [...counts.values()].filter((n) => n > 1).length
    const published = query<{ id: string }>(node.dir, "SELECT producer || ' ' || event_id AS id FROM events WHERE type = 'test.consume'").map((r) => r.id)
    const missing = published.filter((id) => !counts.has(id)).length
    expect({ handled: handled.length, repeats, missing }).toEqual({ handled: 1000, repeats: 0, missing: 0 })
    // Published once each, however often the producer retried.
    expect(query<{ n: number }>(node.dir, "SELECT count(*) AS n FROM events WHERE type = 'test.consume'")).toEqual([{ n: 1000 }])
  }, 300_000)

  test('publish errors are typed with issues; a reused key is a 409 naming the first event; publishBatch splits by bytes and keeps the order', async () => {
    using tmp = tempDir()
    await using node = await NodeProcess.init(tmp.path, 'n')
    await node.start(['--max-body-size', '64KiB'])
    const cairn = new CairnClient({ dataDir: node.dir })
    const bad = await cairn.publish({ type: 'Not A Type', payload: {} }).catch((e: unknown) => e)
    expect(bad).toBeInstanceOf(CairnApiError)
    expect(bad).toMatchObject({ status: 400, code: 'invalid_request', issues: [{ path: 'type', code: 'regex' }] })
    const first = await cairn.publish({ type: 'test.key', payload: { n: 1 }, event_id: 'order-123' })
    expect(await cairn.publish({ type: 'test.key', payload: { n: 1 }, event_id: 'order-123' })).toEqual({ ...first, replayed: true })
    expect(await cairn.publish({ type: 'test.key', payload: { n: 2 }, event_id: 'order-123' }).catch((e: unknown) => e)).toMatchObject({
      status: 409,
      code: 'idempotency_key_reused',
      eventId: first.event_id
    })
    // 300 events of about 1 KiB are over 64 KiB: several requests, in order, each event once.
    const events = Array.from({ length: 300 }, (_, i) => ({ type: 'test.split', payload: { i, pad: 'x'.repeat(1000) } }))
    const results = await cairn.publishBatch(events, { idempotencyKey: 'split' })
    expect(results.map((r) => r.seq)).toEqual(Array.from({ length: 300 }, (_, i) => first.seq + 1 + i))
    expect((await cairn.publishBatch(events, { idempotencyKey: 'split' })).every((r) => r.replayed)).toBe(true)
    expect(query<{ n: number }>(node.dir, "SELECT count(*) AS n FROM events WHERE type = 'test.split'")).toEqual([{ n: 300 }])
    // Paged back in order, once processed.
    await waitFor('the split events processed', async () => (await cairn.events({ types: ['test.split'], limit: 1000 })).events.length === 300)
    const page = await cairn.events<{ i: number }>({ types: ['test.split'], limit: 5 })
    expect([page.events.map((e) => e.payload.i), page.has_more]).toEqual([[0, 1, 2, 3, 4], true])
    const next = await cairn.events<{ i: number }>({ types: ['test.split'], after: page.next_after, limit: 5 })
    expect(next.events.map((e) => e.payload.i)).toEqual([5, 6, 7, 8, 9])
  }, 120_000)

  test('the client runs under Deno as it is: publish, then subscribe until the event arrives', async () => {
    using tmp = tempDir()
    await using node = await NodeProcess.init(tmp.path, 'n')
    await node.start()
    const script = join(tmp.path, 'deno.ts')
    writeFileSync(
      script,
      `import { CairnClient } from ${JSON.stringify(join(ROOT, 'src/client/mod.ts'))}
const cairn = new CairnClient({ dataDir: Deno.args[0] })
const r = await cairn.publish({ type: 'test.deno', payload: { from: 'deno' } })
const seen = []
for await (const item of cairn.subscribe({ types: ['test.deno'] })) {
  if (item.kind !== 'event') continue
  seen.push(item.event.event_id)
  if (item.event.event_id === r.event_id) break
}
console.log(JSON.stringify(seen))
`
    )
    const proc = Bun.spawn([join(ROOT, 'node_modules', '.bin', 'deno'), 'run', '-A', script, node.dir], { stdout: 'pipe', stderr: 'pipe' })
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
    expect({ code, stderr: code === 0 ? '' : stderr }).toEqual({ code: 0, stderr: '' })
    expect(JSON.parse(stdout)).toHaveLength(1)
  }, 120_000)

  test('under Deno, subscribe ends with AbortError when its signal aborts, from inside the loop or while it waits, even once the Response is collected', async () => {
    await withApiNode({}, async (_node, baseUrl, token, dir) => {
      const batch = Array.from({ length: 3000 }, (_, i) => ({ type: 'test.abort', payload: { i } }))
      const published = await fetch(`${baseUrl}/v1/events`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(batch) })
      expect(published.status).toBe(201)
      const script = join(dir, '..', 'abort.ts')
      // gc() collects the Response whose body subscribe reads (once V8 has optimized the generator, which a
      // backlog of thousands of events brings about, its frame no longer holds it): Deno then no longer errors
      // the body's reads on the fetch's abort, and a subscribe that relied on that went on past its abort.
      // Each case runs in a process of its own: which one saw it depended on which ran first.
      writeFileSync(
        script,
        `import { CairnClient } from ${JSON.stringify(join(ROOT, 'src/client/mod.ts'))}
const [baseUrl, token, when] = Deno.args
const cairn = new CairnClient({ baseUrl, token })
const bound = setTimeout(() => {
  console.log(JSON.stringify(\`\${when}: still running 10 s after it started\`))
  Deno.exit(0)
}, 10_000)
const ac = new AbortController()
try {
  for await (const item of cairn.subscribe({ types: ['test.abort'], signal: ac.signal })) {
    if (item.kind !== 'caught-up') continue
    globalThis.gc()
    if (when === 'inside') ac.abort()
    else setTimeout(() => { globalThis.gc(); ac.abort() }, 100)
  }
  console.log(JSON.stringify(\`\${when}: ended without an error\`))
} catch (err) {
  console.log(JSON.stringify(\`\${when}: \${err.name}\`))
}
clearTimeout(bound)
`
      )
      const run = async (when: string): Promise<unknown> => {
        const proc = Bun.spawn([join(ROOT, 'node_modules', '.bin', 'deno'), 'run', '-A', '--v8-flags=--expose-gc', script, baseUrl, token, when], { stdout: 'pipe', stderr: 'pipe' })
        const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
        return code === 0 ? JSON.parse(stdout) : `${when}: exited ${code}: ${stderr}`
      }
      expect(await Promise.all([run('inside'), run('waiting')])).toEqual(['inside: AbortError', 'waiting: AbortError'])
    })
  }, 60_000)
})

describe('publishBatch over several requests', () => {
  test("a refused later request names the caller's index and carries what the earlier requests published", async () => {
    await withApiNode({ 'max-batch': 3 }, async (_node, baseUrl, token) => {
      const cairn = new CairnClient({ baseUrl, token })
      const events: PublishInput[] = Array.from({ length: 8 }, (_, i) => ({ type: 'test.chunk', payload: { i } }))
      events[5] = { type: 'Not A Type', payload: {} }
      const err = await cairn.publishBatch(events, { idempotencyKey: 'chunks' }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(CairnApiError)
      const e = err as CairnApiError
      // Events 3 to 5 were the second request: the node named event 5 [2]; the caller sees [5].
      expect({ status: e.status, code: e.code, paths: e.issues.map((i) => i.path) }).toEqual({ status: 400, code: 'invalid_request', paths: ['[5].type'] })
      expect(e.message).toContain('event [5]')
      expect(e.message).not.toContain('[2]')
      expect(e.message).toContain('the 3 events before it are published')
      expect(e.published?.map((r) => r.seq)).toEqual([1, 2, 3])
      // A refused first request has nothing published before it.
      const first = await cairn.publishBatch([{ type: 'Bad', payload: {} }]).catch((x: unknown) => x)
      expect(first).toMatchObject({ status: 400, issues: [{ path: '[0].type' }], published: [] })
    })
  }, 60_000)

  test('a key repeated across requests is refused before any is sent, as the node refuses it within one: 400 duplicate_key naming both indexes', async () => {
    const events: PublishInput[] = Array.from({ length: 8 }, (_, i) => ({ type: 'test.chunk', payload: { i }, event_id: `order-${i}` }))
    // [1] and [5] land in different requests of three: the same event again was a silent replay, another one a 409.
    const again = events.map((e, i) => (i === 5 ? { ...events[1] } : e))
    const other = events.map((e, i) => (i === 5 ? { ...e, event_id: 'order-1' } : e))
    // The node's answer to the same array in one request.
    let oneRequest: { code: string; message: string; issues: unknown[] } | undefined
    await withApiNode({}, async (_node, baseUrl, token) => {
      const res = await fetch(`${baseUrl}/v1/events`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(other) })
      expect(res.status).toBe(400)
      oneRequest = ((await res.json()) as { error: NonNullable<typeof oneRequest> }).error
    })
    expect(oneRequest?.issues).toEqual([{ path: '[5].event_id', message: 'repeats the idempotency key of [1]', code: 'duplicate_key' }])
    await withApiNode({ 'max-batch': 3 }, async (_node, baseUrl, token) => {
      const cairn = new CairnClient({ baseUrl, token })
      for (const batch of [again, other]) {
        const err = await cairn.publishBatch(batch).catch((e: unknown) => e)
        expect(err).toBeInstanceOf(CairnApiError)
        expect(err).toMatchObject({ status: 400, code: oneRequest!.code, message: oneRequest!.message, issues: oneRequest!.issues, published: [] })
      }
      // A key the call gives an event without one (KEY#i) counts too.
      const given = [{ type: 'test.chunk', payload: {}, event_id: 'k#4' }, ...events.slice(0, 4).map(({ event_id: _, ...e }) => e)]
      expect(await cairn.publishBatch(given, { idempotencyKey: 'k' }).catch((e: unknown) => e)).toMatchObject({
        status: 400,
        issues: [{ path: '[4]', message: 'repeats the idempotency key of [0] ("k#4": the call\'s idempotencyKey and its index)', code: 'duplicate_key' }]
      })
      // Nothing of any of them was published.
      expect((await cairn.events({ after: 0 })).events).toEqual([])
    })
  }, 60_000)

  test('an empty batch is refused as over plain HTTP: 400 empty_batch', async () => {
    await withApiNode({}, async (_node, baseUrl, token) => {
      const cairn = new CairnClient({ baseUrl, token })
      const res = await fetch(`${baseUrl}/v1/events`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '[]' })
      const body = (await res.json()) as { error: { code: string; message: string; issues: unknown[] } }
      expect(res.status).toBe(400)
      expect(await cairn.publishBatch([]).catch((e: unknown) => e)).toMatchObject({ status: 400, code: body.error.code, message: body.error.message, issues: body.error.issues })
    })
  }, 60_000)
})

describe('the retry budget', () => {
  test('publish and publishStream wait out a node that is not found for longer than 8 backoffs, and give up after retryForMs', async () => {
    await withApiNode({}, async (_node, _baseUrl, _token, dir) => {
      using tmp = tempDir()
      // A data directory whose node.json is missing (the node restarting) for 1.5 s.
      const restarting = join(tmp.path, 'restarting')
      mkdirSync(restarting)
      copyFileSync(join(dir, 'api.token'), join(restarting, 'api.token'))
      const fast = { dataDir: restarting, minDelayMs: 1, maxDelayMs: 50 }
      const published = new CairnClient(fast).publish({ type: 'test.budget', payload: { n: 1 } })
      const streamed = (async () => {
        const acks = []
        for await (const ack of new CairnClient(fast).publishStream([{ type: 'test.budget', payload: { n: 2 } }])) acks.push(ack)
        return acks
      })()
      await Bun.sleep(1500)
      copyFileSync(join(dir, 'node.json'), join(restarting, 'node.json'))
      expect((await published).replayed).toBe(false)
      expect((await streamed).map((a) => a.result?.replayed)).toEqual([false])

      const gone = join(tmp.path, 'gone')
      mkdirSync(gone)
      const started = Date.now()
      const err = await new CairnClient({ ...fast, dataDir: gone, retryForMs: 300 }).publish({ type: 'test.budget', payload: {} }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(CairnUnavailableError)
      expect((err as Error).message).toContain('no readable node.json')
      expect(Date.now() - started).toBeGreaterThanOrEqual(300)
      expect(Date.now() - started).toBeLessThan(5000)
    })
  }, 60_000)
})

describe('client options', () => {
  test('a time option given as undefined takes its default; NaN, negative or infinite is refused when the client is made', () => {
    expect(() => new CairnClient({ dataDir: '/nonexistent', retryForMs: undefined, minDelayMs: undefined })).not.toThrow()
    for (const bad of [Number.NaN, -1, Number.POSITIVE_INFINITY]) {
      expect(() => new CairnClient({ dataDir: '/nonexistent', retryForMs: bad })).toThrow('CairnClient option retryForMs must be a number of milliseconds of at least 0')
    }
  })
})

describe('publishStream across a connection the node closed while the source was quiet', () => {
  test('the event read for the closed connection is sent on the next one: every event once, each acknowledged with its own id', async () => {
    await withApiNode({ 'http-idle-timeout': '1s' }, async (_node, baseUrl, token) => {
      async function* events(): AsyncGenerator<PublishInput> {
        yield { type: 'test.quiet', payload: { n: 'A' } }
        // Longer than the idle timeout: the node closes the stream while the client waits on this source.
        await Bun.sleep(2600)
        for (const n of ['B', 'C', 'D']) yield { type: 'test.quiet', payload: { n } }
      }
      const acks: Array<{ n: string; id: string }> = []
      for await (const item of new CairnClient({ baseUrl, token, minDelayMs: 1, maxDelayMs: 50 }).publishStream(events())) {
        acks.push({ n: (item.event.payload as { n: string }).n, id: item.result?.event_id ?? 'refused' })
      }
      const stored = (await (await fetch(`${baseUrl}/v1/events?type=test.quiet`, { headers: { authorization: `Bearer ${token}` } })).json()) as {
        events: Array<{ event_id: string; payload: { n: string } }>
      }
      expect(acks.map((a) => a.n)).toEqual(['A', 'B', 'C', 'D'])
      expect(new Set(acks.map((a) => a.id)).size).toBe(4)
      expect(stored.events.map((e) => [e.payload.n, e.event_id]).sort()).toEqual(acks.map((a) => [a.n, a.id]).sort())
    })
  }, 60_000)
})

describe('publishStream with a source quieter than the node’s idle timeout', () => {
  test('the node closing idle streams is no failure: a source quiet for longer than retryForMs goes on, its next event sent at once', async () => {
    await withApiNode({ 'http-idle-timeout': '1s' }, async (_node, baseUrl, token) => {
      let yieldedAt = 0
      async function* events(): AsyncGenerator<PublishInput> {
        yield { type: 'test.quiet', payload: { n: 'A' } }
        // Several idle timeouts, and more than retryForMs.
        await Bun.sleep(4000)
        yieldedAt = Date.now()
        yield { type: 'test.quiet', payload: { n: 'B' } }
        // Quiet again: B's acknowledgement must not wait for another event.
        await Bun.sleep(3000)
      }
      const acks: Array<{ n: string; after: number }> = []
      for await (const item of new CairnClient({ baseUrl, token, retryForMs: 1500, minDelayMs: 1, maxDelayMs: 50 }).publishStream(events())) {
        acks.push({ n: (item.event.payload as { n: string }).n, after: Date.now() - yieldedAt })
      }
      expect(acks.map((a) => a.n)).toEqual(['A', 'B'])
      expect(acks[1].after).toBeLessThan(2000)
    })
  }, 60_000)
})

describe('publishStream ending', () => {
  test('a source that throws while the client waits to reconnect is reported; a break tells the source (return); a node that ends every stream at once is a failure', async () => {
    await withApiNode({ 'http-idle-timeout': '1s' }, async (_node, baseUrl, token) => {
      async function* breaking(): AsyncGenerator<PublishInput> {
        yield { type: 'test.end', payload: { n: 'A' } }
        await Bun.sleep(2500)
        throw new Error('source broke')
      }
      const client = new CairnClient({ baseUrl, token, minDelayMs: 3000, maxDelayMs: 3000 })
      const seen: string[] = []
      const err = await (async () => {
        for await (const item of client.publishStream(breaking())) seen.push((item.event.payload as { n: string }).n)
      })().catch((e: unknown) => e)
      expect({ seen, message: (err as Error | undefined)?.message }).toEqual({ seen: ['A'], message: 'source broke' })

      let returned = false
      const waiting: AsyncIterator<PublishInput> & AsyncIterable<PublishInput> = {
        [Symbol.asyncIterator]() {
          return this
        },
        first: true,
        async next() {
          if ((this as unknown as { first: boolean }).first) {
            ;(this as unknown as { first: boolean }).first = false
            return { done: false, value: { type: 'test.end', payload: { n: 'B' } } }
          }
          return await new Promise<IteratorResult<PublishInput>>(() => {})
        },
        async return() {
          returned = true
          return { done: true, value: undefined }
        }
      } as AsyncIterator<PublishInput> & AsyncIterable<PublishInput>
      for await (const _ of new CairnClient({ baseUrl, token }).publishStream(waiting)) break
      expect(returned).toBe(true)
    })
    // A node (or a proxy) that answers every stream at once with nothing: the budget runs out.
    using fake = Bun.serve({
      hostname: '127.0.0.1',
      port: 0,
      fetch: (req) =>
        new URL(req.url).pathname === '/v1/limits'
          ? Response.json({
              max_body_bytes: 1048576,
              max_batch: 100,
              max_event_bytes: 262144,
              max_depth: 63,
              max_idempotency_key: 256,
              max_page: 1000,
              max_types: 64,
              stream_heartbeat_ms: 15000,
              stream_retry_ms: 2000,
              publish_stream_line_bytes: 266240,
              publish_stream_window: 10
            })
          : new Response('', { status: 200 })
    })
    async function* quiet(): AsyncGenerator<PublishInput> {
      await Bun.sleep(60_000)
      yield { type: 'test.end', payload: {} }
    }
    const started = Date.now()
    const gaveUp = await (async () => {
      for await (const _ of new CairnClient({ baseUrl: `http://127.0.0.1:${fake.port}`, token: 'x'.repeat(32), retryForMs: 500, minDelayMs: 1, maxDelayMs: 50 }).publishStream(quiet())) {
      }
    })().catch((e: unknown) => e)
    expect(gaveUp).toBeInstanceOf(CairnUnavailableError)
    expect(Date.now() - started).toBeLessThan(10_000)
  }, 60_000)
})

describe('subscribe against a node that goes silent', () => {
  test('a connection that brings nothing for three heartbeats is dropped and made again, resuming after the last event', async () => {
    const afters: string[] = []
    // A node that sends its ready event and one event, then hangs without closing the connection.
    using server = Bun.serve({
      hostname: '127.0.0.1',
      port: 0,
      fetch: (req) => {
        afters.push(new URL(req.url).searchParams.get('after') ?? '')
        const cursor = afters.length
        const event = { event_id: `e${cursor}`, type: 'test.hang', version: 1, producer: 'p', seq: cursor, hlc: '0', occurred_at: '', payload: {}, cursor, cid: 'c' }
        const text = `retry: 10\nevent: ready\ndata: {"cursor_space":"${'a'.repeat(32)}","after":0,"heartbeat_ms":100}\n\nid: ${cursor}\ndata: ${JSON.stringify(event)}\n\n`
        return new Response(
          new ReadableStream({
            start(controller) {
              controller.enqueue(new TextEncoder().encode(text))
            }
          }),
          { headers: { 'content-type': 'text/event-stream' } }
        )
      }
    })
    const cairn = new CairnClient({ baseUrl: `http://127.0.0.1:${server.port}`, token: 't' })
    const stop = new AbortController()
    const seen: number[] = []
    const consuming = (async () => {
      for await (const item of cairn.subscribe({ signal: stop.signal })) {
        if (item.kind === 'event') seen.push(item.cursor)
        if (seen.length === 3) stop.abort()
      }
    })().catch((err: Error) => {
      if (err.name !== 'AbortError') throw err
    })
    await consuming
    expect({ seen, afters }).toEqual({ seen: [1, 2, 3], afters: ['0', '1', '2'] })
  }, 30_000)
})

/** True when two types are the same (each assignable to the other, optional fields included). */
type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false

describe("the client's types", () => {
  test('are the types of the schemas the node validates and documents with', () => {
    const checks: [
      Same<PublishResult, v.InferOutput<typeof PublishResultSchema>>,
      Same<Limits, v.InferOutput<typeof LimitsSchema>>,
      Same<Omit<PublishInput, 'event_id'>, Omit<v.InferInput<typeof PublishRequestSchema>, 'event_id'>>,
      Same<Omit<CairnEvent, 'payload'>, Omit<v.InferOutput<typeof EventSchema>, 'payload'>>,
      Same<Omit<EventsPage, 'events'>, Omit<v.InferOutput<typeof EventsPageSchema>, 'events'>>
    ] = [true, true, true, true, true]
    expect(checks).toEqual([true, true, true, true, true])
  })
})
