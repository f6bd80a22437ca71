import { describe, expect, test } from 'bun:test'
import { readdirSync, readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { fakePeerId } from '../adversary/helpers.ts'
import { query } from '../helpers/db.ts'
import { withApiNode } from '../helpers/forge.ts'
import { invite, ROOT } from '../helpers/process.ts'

/** @returns the status and JSON body of one request to the node's API, with its token */
async function call(base: string, token: string, method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; body: any }> {
  const res = await fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers }, body })
  return { status: res.status, headers: res.headers, body: await res.json() }
}

describe('request bodies', () => {
  test('a JSON body may be declared application/json or any application/*+json type, as the OpenAPI says; anything else is 415 on every JSON route', async () => {
    await withApiNode({}, async (_node, base, token) => {
      expect((await call(base, token, 'POST', '/v1/events', JSON.stringify(invite(1)), { 'content-type': 'application/ld+json' })).status).toBe(201)
      expect((await call(base, token, 'POST', '/v1/events', JSON.stringify(invite(2)), { 'content-type': 'application/vnd.foo+json; charset=utf-8' })).status).toBe(201)
      for (const path of ['/v1/events', '/v1/snapshots', '/v1/members']) {
        const refused = await call(base, token, 'POST', path, 'x', { 'content-type': 'text/plain' })
        expect([path, refused.status, refused.body.error.code, refused.headers.get('accept-post')]).toEqual([path, 415, 'unsupported_media_type', 'application/json, application/*+json'])
        expect(refused.body.error.message).toContain('application/*+json')
      }
      const doc = (await (await fetch(`${base}/v1/openapi.json`)).json()) as { paths: Record<string, { post: { requestBody: { content: object } } }> }
      for (const path of ['/v1/events', '/v1/snapshots', '/v1/members']) {
        expect([path, Object.keys(doc.paths[path].post.requestBody.content)]).toEqual([path, ['application/json', 'application/*+json']])
      }
    })
  }, 60_000)
})

describe('request bodies with a content coding', () => {
  test('are refused on every body route, naming the coding: 415 unsupported_encoding with Accept-Encoding: identity, nothing stored; identity is taken', async () => {
    await withApiNode({}, async (_node, base, token, dir) => {
      const event = JSON.stringify({ type: 'test.gzip', payload: {}, event_id: 'gzipped' })
      const routes: Array<[string, string, string]> = [
        ['/v1/events', 'application/json', event],
        ['/v1/events/stream', 'application/x-ndjson', `${event}\n`],
        ['/v1/snapshots', 'application/json', '{}'],
        ['/v1/members', 'application/json', JSON.stringify({ peer_id: fakePeerId(1) })]
      ]
      for (const [path, type, body] of routes) {
        const res = await fetch(`${base}${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': type, 'content-encoding': 'gzip' },
          body: new Uint8Array(Bun.gzipSync(body))
        })
        const { error } = (await res.json()) as { error?: { code: string; message: string } }
        expect([path, res.status, error?.code, res.headers.get('accept-encoding')]).toEqual([path, 415, 'unsupported_encoding', 'identity'])
        expect(error?.message).toStartWith('Unsupported content encoding gzip: ')
      }
      expect(query<{ n: number }>(dir, 'SELECT count(*) AS n FROM outbox')).toEqual([{ n: 0 }])
      const identity = await call(base, token, 'POST', '/v1/events', event, { 'content-encoding': 'identity' })
      expect(identity.status).toBe(201)
    })
  }, 60_000)
})

describe('request bodies that are not UTF-8', () => {
  test('are refused on every JSON route as the streaming publish refuses such a line: 400 malformed_json, nothing stored', async () => {
    await withApiNode({}, async (_node, base, token, dir) => {
      // "café" in Latin-1: the é is the byte 0xe9, no UTF-8 sequence (a lenient read stored it as U+FFFD).
      const latin1 = (text: string): Uint8Array<ArrayBuffer> => new Uint8Array(Buffer.from(text, 'latin1'))
      const bodies: Record<string, Uint8Array<ArrayBuffer>> = {
        '/v1/events': latin1(JSON.stringify({ type: 'test.text', payload: { name: 'caf\u00e9' }, event_id: 'latin-1' })),
        '/v1/snapshots': latin1('{"plugin":"caf\u00e9"}'),
        '/v1/members': latin1('{"peer_id":"12D3KooWcaf\u00e9"}')
      }
      const members = await call(base, token, 'GET', '/v1/members')
      for (const [path, body] of Object.entries(bodies)) {
        const res = await fetch(`${base}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json; charset=iso-8859-1' }, body })
        const { error } = (await res.json()) as { error?: { code: string; message: string } }
        expect([path, res.status, error?.code, error?.message]).toEqual([
          path,
          400,
          'malformed_json',
          'Malformed JSON: the body is not UTF-8 (its Content-Type says charset=iso-8859-1: JSON is read as UTF-8 only)'
        ])
      }
      const plain = await fetch(`${base}/v1/events`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: bodies['/v1/events'] })
      expect(((await plain.json()) as { error: { message: string } }).error.message).toBe('Malformed JSON: the body is not UTF-8')
      // The stream answers the same line alike.
      const stream = await fetch(`${base}/v1/events/stream`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
        body: new Uint8Array([...bodies['/v1/events'], 0x0a])
      })
      expect(((await stream.json()) as { error: { code: string } }).error.code).toBe('malformed_json')
      expect(query<{ n: number }>(dir, 'SELECT count(*) AS n FROM outbox')).toEqual([{ n: 0 }])
      expect((await call(base, token, 'GET', '/v1/members')).body).toEqual(members.body)
    })
  }, 60_000)
})

describe('the Host check', () => {
  test("takes a loopback name with the endpoint's port or none, as docs/api.md says; refuses another name or port", async () => {
    await withApiNode({}, async (node, base) => {
      const port = node.http!.port
      const status = async (host: string): Promise<number> => (await fetch(`${base}/healthz`, { headers: { host } })).status
      const answers: Record<string, number> = {}
      for (const host of [`127.0.0.1:${port}`, '127.0.0.1', 'localhost', `localhost:${port}`, '[::1]', `127.0.0.1:${port + 1}`, 'evil.example', `evil.example:${port}`])
        answers[host] = await status(host)
      expect(answers).toEqual({
        [`127.0.0.1:${port}`]: 200,
        '127.0.0.1': 200,
        localhost: 200,
        [`localhost:${port}`]: 200,
        '[::1]': 200,
        [`127.0.0.1:${port + 1}`]: 421,
        'evil.example': 421,
        [`evil.example:${port}`]: 421
      })
    })
  }, 60_000)
})

describe("docs/api.md's Errors section", () => {
  test('lists every error code and issue code the API answers with', () => {
    const doc = readFileSync(join(ROOT, 'docs', 'api.md'), 'utf8')
    const errors = doc.slice(doc.indexOf('## Errors'), doc.indexOf('\n## ', doc.indexOf('## Errors') + 1))
    // The sources of the API's answers: the routes, the publish checks, the members routes, plugin schemas, the server.
    const files = [
      ...readdirSync(join(ROOT, 'src', 'http'))
        .filter((f) => f.endsWith('.ts'))
        .map((f) => join('src', 'http', f)),
      'src/publish/request.ts',
      'src/members/membership.ts',
      'src/plugins/schemas.ts',
      'src/runtime/serve.ts'
    ]
    const codes = new Set<string>()
    for (const f of files) {
      const text = readFileSync(join(ROOT, f), 'utf8')
      for (const m of text.matchAll(/code: '([a-z_]+)'|errorResponse\(\d+, '([a-z_]+)'|StaleCursorError\(\s*'([a-z_]+)'|errorBody\('([a-z_]+)'/g)) codes.add(m[1] ?? m[2] ?? m[3] ?? m[4])
    }
    // The fallback code of a StaleCursorError, which always carries its reason (cursor_beyond_end, cursor_space_mismatch).
    codes.delete('stale_cursor')
    expect(codes.size).toBeGreaterThan(20)
    expect([...codes].filter((c) => !errors.includes(`\`${c}\``)).sort()).toEqual([])
  })
})

describe('cursors', () => {
  test('every whole number up to 2^53 - 1 is a cursor on GET /v1/events and /v1/stream (after= and Last-Event-ID); beyond the end is 409, beyond 2^53 - 1 is 400 naming the bound', async () => {
    await withApiNode({}, async (_node, base, token) => {
      expect((await call(base, token, 'POST', '/v1/events', JSON.stringify([invite(1), invite(2), invite(3), invite(4), invite(5), invite(6)]))).status).toBe(201)
      const get = async (path: string, headers: Record<string, string> = {}): Promise<{ status: number; code?: string; message?: string }> => {
        const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}`, ...headers } })
        if (res.headers.get('content-type')?.startsWith('text/event-stream') === true) {
          await res.body?.cancel()
          return { status: res.status }
        }
        const body = (await res.json()) as { error?: { code: string; message: string } }
        return { status: res.status, code: body.error?.code, message: body.error?.message }
      }
      for (const after of ['1000000000000000', '9007199254740991']) {
        expect([after, (await get(`/v1/events?after=${after}`)).code]).toEqual([after, 'cursor_beyond_end'])
        expect([after, (await get(`/v1/stream?after=${after}`)).code]).toEqual([after, 'cursor_beyond_end'])
        expect([after, (await get('/v1/stream', { 'last-event-id': after })).code]).toEqual([after, 'cursor_beyond_end'])
      }
      for (const refused of [await get('/v1/events?after=9007199254740992'), await get('/v1/stream?after=9007199254740992'), await get('/v1/stream', { 'last-event-id': '9007199254740992' })]) {
        expect(refused).toMatchObject({ status: 400, code: 'invalid_request' })
        expect(refused.message).toContain('at most 9007199254740991')
      }
      // A leading zero is taken: 05 is cursor 5.
      const page = (await (await fetch(`${base}/v1/events?after=05`, { headers: { authorization: `Bearer ${token}` } })).json()) as { next_after: number }
      expect(page.next_after).toBeGreaterThanOrEqual(5)
      expect((await get('/v1/stream?after=05')).status).toBe(200)
      expect((await get('/v1/stream', { 'last-event-id': '05' })).status).toBe(200)
      expect(await get('/v1/events?after=5x')).toMatchObject({ status: 400, message: expect.stringContaining('a whole number from 0 to 9007199254740991') })
    })
  }, 60_000)
})

/** @returns the status line and body of a POST /v1/events whose Idempotency-Key header is these raw bytes (fetch cannot send them) */
async function rawKeyPost(port: number, token: string, key: Buffer, body: string): Promise<{ status: number; body: any }> {
  return await new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      const head = `POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\nIdempotency-Key: `
      socket.write(Buffer.concat([Buffer.from(head), key, Buffer.from(`\r\n\r\n${body}`)]))
    })
    const chunks: Buffer[] = []
    socket.on('data', (d: Buffer) => chunks.push(d))
    socket.on('error', reject)
    socket.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8')
      resolve({ status: Number(text.split(' ')[1]), body: JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) })
    })
  })
}

describe('text the node stores', () => {
  test('an idempotency key, actor or correlation id with a lone surrogate is refused, so no two keys collide once stored; the length counts UTF-16 code units and says so', async () => {
    await withApiNode({}, async (node, base, token) => {
      const publish = async (event: Record<string, unknown> | Array<Record<string, unknown>>) => await call(base, token, 'POST', '/v1/events', JSON.stringify(event))
      const event = { type: 'test.key', payload: { n: 1 } }
      const lone = await publish({ ...event, event_id: 'k\udc00' })
      expect([lone.status, lone.body.error.issues.map((i: { path: string }) => i.path)]).toEqual([400, ['event_id']])
      expect(lone.body.error.message).toContain('lone UTF-16 surrogate')
      // "k\ufffd" is its own key: nothing was published under the lone surrogate to replay.
      expect((await publish({ ...event, event_id: 'k\ufffd' })).status).toBe(201)
      expect((await publish([{ ...event, event_id: 'b\ud800' }])).body.error.issues.map((i: { path: string }) => i.path)).toEqual(['[0].event_id'])
      for (const field of ['actor', 'correlation_id', 'causation_id']) {
        const refused = await publish({ ...event, [field]: 'x\udfff' })
        expect([field, refused.status, refused.body.error.issues[0]?.path]).toEqual([field, 400, field])
      }
      // The header carries bytes, read as Latin-1: the UTF-8-like bytes of a lone surrogate (U+DC20's; a last
      // byte up to 0x9f would be a C1 control character, refused) are three Latin-1 characters, a key of
      // their own, and no lone surrogate reaches the store this way.
      const viaHeader = await rawKeyPost(node.http!.port, token, Buffer.from([0x68, 0xed, 0xb0, 0xa0]), JSON.stringify(event))
      expect([viaHeader.status, viaHeader.body.replayed]).toEqual([201, false])
      expect((await publish({ ...event, event_id: 'h\ufffd' })).status).toBe(201)
      // 128 emoji are 256 UTF-16 code units; 129 are 258, refused saying what is counted.
      expect((await publish({ ...event, event_id: '😀'.repeat(128) })).status).toBe(201)
      const long = await publish({ ...event, event_id: '😀'.repeat(129) })
      expect([long.status, long.body.error.issues[0].code]).toEqual([400, 'max_length'])
      expect(long.body.error.issues[0].message).toContain('at most 256 UTF-16 code units')
    })
  }, 60_000)
})

describe('idempotency keys', () => {
  test('a key with a control character is refused, C1 (U+0080-U+009F) as C0 and DEL, in event_id: 400, code regex; the header takes the bytes 0x80-0x9f of raw UTF-8 text', async () => {
    await withApiNode({}, async (node, base, token, dir) => {
      const event = { type: 'test.key', payload: {} }
      for (const ch of ['\u0000', '\u001f', '\u007f', '\u0080', '\u0085', '\u009f']) {
        const refused = await call(base, token, 'POST', '/v1/events', JSON.stringify({ ...event, event_id: `k${ch}` }))
        expect([ch, refused.status, refused.body.error?.issues]).toEqual([ch, 400, [{ path: 'event_id', message: 'Expected an idempotency key without control characters', code: 'regex' }]])
      }
      expect(query<{ n: number }>(dir, 'SELECT count(*) AS n FROM outbox')).toEqual([{ n: 0 }])
      // A header's bytes are read as Latin-1, where 0x80-0x9f are C1 characters; but curl, Go and others send the
      // raw UTF-8 of a key in it, and "€" (e2 82 ac), "—" (e2 80 94) and "日" (e6 97 a5) hold such bytes: each is a
      // key, the same on a retry.
      for (const text of ['order-€', 'a—b', '日']) {
        const bytes = Buffer.from(text, 'utf8')
        const first = await rawKeyPost(node.http!.port, token, bytes, JSON.stringify({ ...event, payload: { text } }))
        const again = await rawKeyPost(node.http!.port, token, bytes, JSON.stringify({ ...event, payload: { text } }))
        expect([text, first.status, again.status, again.body.replayed]).toEqual([text, 201, 200, true])
      }
      // Just past C1: U+00A0 (no-break space, the header's byte 0xa0) is a key.
      expect((await call(base, token, 'POST', '/v1/events', JSON.stringify({ ...event, event_id: 'k\u00a0' }))).status).toBe(201)
      expect((await rawKeyPost(node.http!.port, token, Buffer.from([0x68, 0xa0]), JSON.stringify(event))).status).toBe(201)
    })
  }, 60_000)
})

describe('every route alike', () => {
  test('a 413 carries the limits on every route that answers one, as docs/api.md says', async () => {
    await withApiNode({ 'max-body-size': '4KiB' }, async (_node, base, token) => {
      const limits = (await call(base, token, 'GET', '/v1/limits')).body
      const big = 'x'.repeat(5000)
      for (const [path, body] of [
        ['/v1/events', JSON.stringify({ type: 'test.big', payload: big })],
        ['/v1/snapshots', JSON.stringify({ plugin: big })],
        ['/v1/members', JSON.stringify({ peer_id: big })]
      ]) {
        const refused = await call(base, token, 'POST', path, body)
        expect([path, refused.status, refused.body.error.code, refused.body.error.limits]).toEqual([path, 413, 'too_large', limits])
      }
    })
  }, 60_000)

  test('every GET route of /v1 refuses a query parameter it does not know: 400 unknown_parameter', async () => {
    await withApiNode({}, async (_node, base, token) => {
      for (const path of ['/v1/limits', '/v1/status', '/v1/events', '/v1/stream', '/v1/schemas', '/v1/schemas/workspace.invited', '/v1/members']) {
        const refused = await call(base, token, 'GET', `${path}?x=1`)
        expect([path, refused.status, refused.body.error?.issues?.[0]?.code]).toEqual([path, 400, 'unknown_parameter'])
      }
    })
  }, 60_000)
})

describe('/v1/limits', () => {
  test("max_depth is a payload's deepest nesting the node takes: one level less than --max-depth, which bounds the event file", async () => {
    await withApiNode({ 'max-depth': 8 }, async (_node, base, token) => {
      expect((await call(base, token, 'GET', '/v1/limits')).body.max_depth).toBe(7)
      const nested = (levels: number): unknown => (levels === 1 ? { leaf: true } : { down: nested(levels - 1) })
      const publish = async (levels: number): Promise<number> => (await call(base, token, 'POST', '/v1/events', JSON.stringify({ type: 'test.deep', payload: nested(levels) }))).status
      expect([await publish(7), await publish(8)]).toEqual([201, 400])
    })
  }, 60_000)
})
