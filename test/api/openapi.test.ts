import { describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Validator } from '@seriousme/openapi-schema-validator'
import Ajv2020 from 'ajv/dist/2020'
import { initDataDir } from '../../src/datadir/init.ts'
import { CommitFailedError, NotOwnerError, ProducerDivergedError } from '../../src/errors.ts'
import { createHttpApp, ROUTES } from '../../src/http/app.ts'
import { silentLog } from '../../src/log/logger.ts'
import type { Metrics } from '../../src/metrics/metrics.ts'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { EventsTable } from '../../src/store/events.ts'
import { migrate } from '../../src/store/migrations.ts'
import { inProcessNode } from '../helpers/forge.ts'
import { invite, tempDir } from '../helpers/process.ts'
import { fakePeerId } from '../adversary/helpers.ts'

/** One request that answers a documented status of a documented operation. */
interface Case {
  path: string
  method: string
  status: number
  /** the concrete path and query, when not `path` itself */
  url?: string
  headers?: Record<string, string>
  body?: string
  /** sent to the stub app whose node cannot serve (not ready, commits failing) */
  unavailable?: boolean
  /** sent to the stub app of an owner whose membership changes are refused with this error, as its publishes are */
  refusal?: Error
}

const json = { 'content-type': 'application/json' }

describe('/v1/openapi.json', () => {
  test('is a valid OpenAPI 3.1 document, documents every route, and each documented status answers as documented', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'n')
    await initDataDir(dir, { newNetwork: true })
    const node = await inProcessNode(dir, { 'max-body-size': '4KiB' })
    try {
      const base = `http://127.0.0.1:${node.http!.port}`
      const token = readFileSync(join(dir, 'api.token'), 'utf8').trim()
      const doc = (await (await fetch(`${base}/v1/openapi.json`)).json()) as { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: unknown }> }> }>> }

      const validator = new Validator()
      const result = await validator.validate(structuredClone(doc))
      expect({ valid: result.valid, errors: result.errors }).toEqual({ valid: true, errors: undefined })
      expect(validator.version).toBe('3.1')

      // Every route is documented with its methods, and nothing else is.
      const documented = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`))
      const served = Object.entries(ROUTES).flatMap(([p, methods]) => methods.map((m) => `${m} ${p.replace(/:(\w+)/g, '{$1}')}`))
      expect(documented.sort()).toEqual(served.sort())

      const published = await node.publish({ ...invite(1), event_id: 'invite-1' })
      const auth = { authorization: `Bearer ${token}` }
      // A membership change is a publish of this node's: refused as any publish is when it must not publish.
      const diverged = new ProducerDivergedError('Cannot publish: a peer holds head seq 9 of this node, ahead of its outbox (seq 3)')
      const commitFailed = new CommitFailedError('Cannot publish: the commit failed, nothing of it was written: database or disk is full')
      const cases: Case[] = [
        { path: '/healthz', method: 'GET', status: 200 },
        { path: '/readyz', method: 'GET', status: 200 },
        { path: '/readyz', method: 'GET', status: 503, unavailable: true },
        { path: '/status', method: 'GET', status: 200 },
        { path: '/metrics', method: 'GET', status: 200 },
        { path: '/v1/openapi.json', method: 'GET', status: 200 },
        { path: '/v1/limits', method: 'GET', status: 200, headers: auth },
        { path: '/v1/limits', method: 'GET', status: 400, url: '/v1/limits?x=1', headers: auth },
        { path: '/v1/limits', method: 'GET', status: 401 },
        { path: '/v1/status', method: 'GET', status: 200, headers: auth },
        { path: '/v1/status', method: 'GET', status: 400, url: '/v1/status?verbose=1', headers: auth },
        { path: '/v1/status', method: 'GET', status: 401 },
        { path: '/v1/events', method: 'POST', status: 201, headers: { ...auth, ...json }, body: JSON.stringify(invite(2)) },
        { path: '/v1/events', method: 'POST', status: 200, headers: { ...auth, ...json }, body: JSON.stringify({ ...invite(1), event_id: 'invite-1' }) },
        { path: '/v1/events', method: 'POST', status: 400, headers: { ...auth, ...json }, body: JSON.stringify({ ...invite(3), type: 'Bad', extra: 1 }) },
        { path: '/v1/events', method: 'POST', status: 401, headers: json, body: '{}' },
        { path: '/v1/events', method: 'POST', status: 409, headers: { ...auth, ...json }, body: JSON.stringify({ ...invite(4), event_id: 'invite-1' }) },
        { path: '/v1/events', method: 'POST', status: 413, headers: { ...auth, ...json }, body: JSON.stringify({ type: 'test.big', payload: 'x'.repeat(5000) }) },
        { path: '/v1/events', method: 'POST', status: 415, headers: { ...auth, 'content-type': 'text/plain' }, body: JSON.stringify(invite(5)) },
        { path: '/v1/events', method: 'POST', status: 503, headers: { ...auth, ...json }, body: JSON.stringify(invite(6)), unavailable: true },
        { path: '/v1/events/stream', method: 'POST', status: 200, headers: { ...auth, 'content-type': 'application/x-ndjson' }, body: `${JSON.stringify(invite(7))}\n` },
        { path: '/v1/events/stream', method: 'POST', status: 400, headers: { ...auth, 'content-type': 'application/x-ndjson', 'idempotency-key': 'k' }, body: `${JSON.stringify(invite(8))}\n` },
        { path: '/v1/events/stream', method: 'POST', status: 401, headers: { 'content-type': 'application/x-ndjson' }, body: '' },
        { path: '/v1/events/stream', method: 'POST', status: 415, headers: { ...auth, ...json }, body: JSON.stringify(invite(9)) },
        { path: '/v1/events', method: 'GET', status: 200, url: `/v1/events?type=workspace.invited&producer=${node.peerId}&after=0&limit=1`, headers: auth },
        { path: '/v1/events', method: 'GET', status: 400, url: '/v1/events?limit=0', headers: auth },
        { path: '/v1/events', method: 'GET', status: 401 },
        { path: '/v1/events', method: 'GET', status: 409, url: '/v1/events?after=1000', headers: auth },
        { path: '/v1/stream', method: 'GET', status: 200, headers: auth },
        { path: '/v1/stream', method: 'GET', status: 400, url: '/v1/stream?after=-1', headers: auth },
        { path: '/v1/stream', method: 'GET', status: 401 },
        { path: '/v1/stream', method: 'GET', status: 409, url: '/v1/stream?after=1000', headers: auth },
        { path: '/v1/schemas', method: 'GET', status: 200, headers: auth },
        { path: '/v1/schemas', method: 'GET', status: 400, url: '/v1/schemas?all=1', headers: auth },
        { path: '/v1/schemas', method: 'GET', status: 401 },
        { path: '/v1/schemas/{type}', method: 'GET', status: 200, url: '/v1/schemas/workspace.invited?version=1', headers: auth },
        { path: '/v1/schemas/{type}', method: 'GET', status: 400, url: '/v1/schemas/workspace.invited?version=x', headers: auth },
        { path: '/v1/schemas/{type}', method: 'GET', status: 401, url: '/v1/schemas/workspace.invited' },
        { path: '/v1/schemas/{type}', method: 'GET', status: 404, url: '/v1/schemas/no.such', headers: auth },
        { path: '/v1/snapshots', method: 'POST', status: 200, headers: { ...auth, ...json }, body: '{}' },
        { path: '/v1/snapshots', method: 'POST', status: 400, headers: { ...auth, ...json }, body: '{"plugin":5}' },
        { path: '/v1/snapshots', method: 'POST', status: 401, headers: json, body: '{}' },
        { path: '/v1/snapshots', method: 'POST', status: 413, headers: { ...auth, ...json }, body: JSON.stringify({ plugin: 'x'.repeat(5000) }) },
        { path: '/v1/snapshots', method: 'POST', status: 415, headers: { ...auth, 'content-type': 'text/plain' }, body: '{}' },
        { path: '/v1/members', method: 'GET', status: 200, headers: auth },
        { path: '/v1/members', method: 'GET', status: 400, url: '/v1/members?x=1', headers: auth },
        { path: '/v1/members', method: 'GET', status: 401 },
        { path: '/v1/members', method: 'POST', status: 201, headers: { ...auth, ...json }, body: JSON.stringify({ peer_id: fakePeerId(1) }) },
        { path: '/v1/members', method: 'POST', status: 400, headers: { ...auth, ...json }, body: JSON.stringify({ peer_id: fakePeerId(1), boss: true }) },
        { path: '/v1/members', method: 'POST', status: 401, headers: json, body: '{}' },
        { path: '/v1/members', method: 'POST', status: 403, headers: { ...auth, ...json }, body: JSON.stringify({ peer_id: fakePeerId(2) }), unavailable: true },
        { path: '/v1/members', method: 'POST', status: 409, headers: { ...auth, ...json }, body: JSON.stringify({ peer_id: fakePeerId(2) }), refusal: diverged },
        { path: '/v1/members', method: 'POST', status: 503, headers: { ...auth, ...json }, body: JSON.stringify({ peer_id: fakePeerId(2) }), refusal: commitFailed },
        { path: '/v1/members', method: 'POST', status: 413, headers: { ...auth, ...json }, body: JSON.stringify({ peer_id: 'x'.repeat(5000) }) },
        { path: '/v1/members', method: 'POST', status: 415, headers: { ...auth, 'content-type': 'text/plain' }, body: 'x' },
        { path: '/v1/members/{peer_id}', method: 'DELETE', status: 200, url: `/v1/members/${fakePeerId(1)}`, headers: auth },
        { path: '/v1/members/{peer_id}', method: 'DELETE', status: 400, url: `/v1/members/${fakePeerId(3)}`, headers: auth },
        { path: '/v1/members/{peer_id}', method: 'DELETE', status: 401, url: `/v1/members/${fakePeerId(3)}` },
        { path: '/v1/members/{peer_id}', method: 'DELETE', status: 403, url: `/v1/members/${fakePeerId(3)}`, headers: auth, unavailable: true },
        { path: '/v1/members/{peer_id}', method: 'DELETE', status: 409, url: `/v1/members/${fakePeerId(3)}`, headers: auth, refusal: diverged },
        { path: '/v1/members/{peer_id}', method: 'DELETE', status: 503, url: `/v1/members/${fakePeerId(3)}`, headers: auth, refusal: commitFailed }
      ]
      // Each documented status has its request, and each request a documented status.
      const statuses = Object.entries(doc.paths).flatMap(([p, ops]) => Object.entries(ops).flatMap(([m, op]) => Object.keys(op.responses).map((s) => `${m.toUpperCase()} ${p} ${s}`)))
      expect(cases.map((c) => `${c.method} ${c.path} ${c.status}`).sort()).toEqual(statuses.sort())

      // The stub app of a node that cannot serve: not ready, every commit failing.
      const db = await openDatabase(':memory:')
      migrate(db)
      const stub = {
        token,
        maxBodySize: 1024,
        maxBatch: 10,
        maxEventSize: 1024,
        maxDepth: 8,
        log: silentLog,
        ready: () => ({ ready: false, reason: 'catching up' }),
        status: async () => ({}),
        publish: async () => {
          throw new CommitFailedError('Cannot publish: the commit failed, nothing of it was written: disk I/O error')
        },
        publishMany: async () => [],
        metrics: () => ({ text: async () => '', contentType: 'text/plain' }) as unknown as Metrics,
        snapshot: async () => ({}),
        stream: { events: new EventsTable(db), watermark: () => 0, wait: async () => false, heartbeatMs: 1000 },
        schemas: () => [],
        schema: () => {
          throw new TypeError('unused')
        }
      }
      const notOwner = async (): Promise<never> => {
        throw new NotOwnerError('Cannot change the membership: this node is not an owner; ask an owner')
      }
      const unavailable = createHttpApp({ ...stub, members: { list: () => ({}), add: notOwner, remove: notOwner } })
      // The stub app of an owner that must not publish: its changes are refused with the case's error.
      let refusal: Error | undefined
      const refused = async (): Promise<never> => {
        throw refusal
      }
      const refusing = createHttpApp({ ...stub, members: { list: () => ({}), add: refused, remove: refused } })

      // ROUTES (what 405 and this test go by) holds every route the app serves.
      const registered = unavailable.routes.filter((r) => r.method !== 'ALL').map((r) => `${r.method} ${r.path}`)
      expect([...new Set(registered)].sort()).toEqual(
        Object.entries(ROUTES)
          .flatMap(([p, methods]) => methods.map((m) => `${m} ${p}`))
          .sort()
      )

      const ajv = new Ajv2020({ strict: false, validateFormats: false })
      ajv.addSchema(doc, 'doc')
      const pointer = (...parts: string[]): string => parts.map((p) => p.replaceAll('~', '~0').replaceAll('/', '~1')).join('/')
      for (const c of cases) {
        const init = { method: c.method, headers: c.headers, body: c.body }
        refusal = c.refusal
        const res =
          c.refusal != null ? await refusing.request(c.url ?? c.path, init) : c.unavailable === true ? await unavailable.request(c.url ?? c.path, init) : await fetch(`${base}${c.url ?? c.path}`, init)
        const what = `${c.method} ${c.url ?? c.path}`
        expect(`${what} ${res.status}`).toBe(`${what} ${c.status}`)
        const content = doc.paths[c.path][c.method.toLowerCase()].responses[String(c.status)].content ?? {}
        const type = Object.keys(content)[0]
        expect(`${what}: ${res.headers.get('content-type')?.split(';')[0]}`).toBe(`${what}: ${type}`)
        if (type === 'text/event-stream') {
          await res.body?.cancel()
          continue
        }
        const body = type === 'application/json' ? await res.json() : await res.text()
        const validate = ajv.compile({ $ref: `doc#/${pointer('paths', c.path, c.method.toLowerCase(), 'responses', String(c.status), 'content', type, 'schema')}` })
        if (!validate(body)) throw new Error(`${what} ${c.status}: the body does not match the document: ${JSON.stringify(validate.errors)}\n${JSON.stringify(body).slice(0, 500)}`)
      }
      expect(published.replayed).toBe(false)

      // Any other method on a route is 405, naming the ones it takes.
      for (const [p, methods] of Object.entries(ROUTES)) {
        const res = await fetch(`${base}${p.replace(':type', 'workspace.invited').replace(':peer_id', fakePeerId(1))}`, { method: 'PATCH', headers: auth })
        expect([p, res.status, res.headers.get('allow'), ((await res.json()) as { error: { code: string } }).error.code]).toEqual([p, 405, methods.join(', '), 'method_not_allowed'])
      }
    } finally {
      await node.stop()
    }
  }, 120_000)
})
