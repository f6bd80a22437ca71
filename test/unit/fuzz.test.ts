import { describe, expect, test } from 'bun:test'
import fc from 'fast-check'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { verifyHead, signHead } from '../../src/model/head.ts'
import { readEventFile } from '../../src/model/eventFile.ts'
import { createHttpApp } from '../../src/http/app.ts'
import { NotFoundError } from '../../src/errors.ts'
import { EventsTable } from '../../src/store/events.ts'
import { silentLog } from '../../src/log/logger.ts'
import { testOutbox } from '../helpers/outbox.ts'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { openBlockDatabase, SqliteBlockstore } from '../../src/store/blockstore.ts'

const RUNS = 3000
const encoder = new TextEncoder()
const key = await generateKeyPair('Ed25519')
const producer = peerIdFromPrivateKey(key).toString()
const limits = { maxEventSize: 256 * 1024, maxDepth: 64 }

/** JSON-ish values, with the fields of envelopes and heads mixed in so that parsers get past the first checks. */
const near = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.jsonValue(),
    tie('object'),
    fc.constantFrom(producer, 'bafkreigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi', '0190b2a4-0000-7000-8000-000000000001', '1763822400000-0000', 1, -1, 1e308, '', null)
  ),
  object: fc.dictionary(
    fc.constantFrom('event_id', 'type', 'version', 'producer', 'seq', 'hlc', 'occurred_at', 'payload', 'actor', 'head', 'sig', 'root', 'acks', '__proto__', 'constructor'),
    tie('value'),
    { maxKeys: 10 }
  )
}))

describe('hostile input never throws past the boundary', () => {
  test('verifyHead rejects any bytes with an InvalidHeadError, never anything else', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 2048 }),
          near.value.map((v) => encoder.encode(JSON.stringify(v) ?? ''))
        ),
        async (bytes) => {
          try {
            await verifyHead(bytes)
          } catch (err) {
            expect((err as Error).name).toBe('InvalidHeadError')
          }
        }
      ),
      { numRuns: RUNS }
    )
  })

  test('a head signed by its producer verifies, and any change to it does not', async () => {
    const head = { producer, seq: 3, root: 'bafkreigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi', hlc: '1763822400000-0001', acks: { [producer]: 3 } }
    expect(await verifyHead(await signHead(head, key))).toEqual(head)
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 4, max: 1000 }), async (seq) => {
        const signed = JSON.parse(new TextDecoder().decode(await signHead(head, key)))
        signed.head.seq = seq
        await expect(verifyHead(encoder.encode(JSON.stringify(signed)))).rejects.toThrow('signature')
      }),
      { numRuns: 200 }
    )
  })

  test('a head that verified once is known again by its exact bytes only: any one byte changed is checked anew and refused', async () => {
    const head = { producer, seq: 9, root: 'bafkreigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi', hlc: '1763822400000-0002', acks: {} }
    const bytes = await signHead(head, key)
    expect(await verifyHead(bytes)).toEqual(head)
    expect(await verifyHead(bytes.slice())).toEqual(head)
    const sigAt = new TextDecoder().decode(bytes).indexOf('"sig":"') + 7
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: sigAt + 40 }), fc.integer({ min: 1, max: 255 }), async (at, delta) => {
        const changed = bytes.slice()
        changed[at] = (changed[at] + delta) % 256
        await expect(verifyHead(changed)).rejects.toThrow()
      }),
      { numRuns: 500 }
    )
  })

  test('readEventFile turns any bytes into an envelope or a rejection with a reason', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 4096 }),
          near.value.map((v) => encoder.encode(JSON.stringify(v) ?? ''))
        ),
        (bytes) => {
          const r = readEventFile(bytes, { producer, seq: 1, eventId: '0190b2a4-0000-7000-8000-000000000001' }, limits)
          if ('rejection' in r) expect(r.rejection.reason).toMatch(/^[a-z_]+$/)
          else expect(r.envelope.producer).toBe(producer)
        }
      ),
      { numRuns: RUNS }
    )
  })

  test('deep nesting is rejected with too_deep, not a stack overflow', () => {
    const deep = '['.repeat(100_000) + ']'.repeat(100_000)
    const r = readEventFile(encoder.encode(deep), { producer, seq: 1, eventId: '0190b2a4-0000-7000-8000-000000000001' }, { maxEventSize: 1024 * 1024, maxDepth: 64 })
    expect('rejection' in r && ['too_deep', 'malformed_json'].includes(r.rejection.reason)).toBe(true)
  })

  test('POST /v1/events answers any body (one event or a batch) with 201, 200, 400, 409 or 413 in the one error shape, never 500', async () => {
    const db = await openDatabase(':memory:')
    migrate(db)
    const blocks = new SqliteBlockstore(await openBlockDatabase(':memory:'))
    const outbox = testOutbox({ db, blocks, privateKey: key, maxBatch: 100, maxEventSize: 4096, maxDepth: 16 })
    const app = createHttpApp({
      token: 'a-token-of-sixteen-chars',
      maxBodySize: 8192,
      maxBatch: 100,
      maxEventSize: 4096,
      maxDepth: 16,
      log: silentLog,
      ready: () => ({ ready: true }),
      status: async () => ({}),
      publish: async (b, k) => await outbox.publish(b, { key: k }),
      publishMany: async (b, k) => await outbox.publishMany(b, k),
      stream: { events: new EventsTable(db), watermark: () => 0, wait: async () => false, heartbeatMs: 1000 },
      schemas: () => [],
      schema: (type) => {
        throw new NotFoundError(`no ${type}`)
      }
    })
    const request = fc.record({ type: fc.oneof(fc.constantFrom('workspace.invited', 'a.b'), fc.string()), payload: near.value }, { requiredKeys: ['type'] })
    const bodies = fc.oneof(
      fc.string({ maxLength: 300 }),
      near.value.map((v) => JSON.stringify(v) ?? ''),
      request.map((v) => JSON.stringify(v)),
      fc.array(fc.oneof(request, near.value), { maxLength: 120 }).map((v) => JSON.stringify(v)),
      fc.constant('x'.repeat(9000))
    )
    await fc.assert(
      fc.asyncProperty(bodies, async (body) => {
        const res = await app.request('/v1/events', {
          method: 'POST',
          body,
          headers: { authorization: 'Bearer a-token-of-sixteen-chars', 'content-type': 'application/json', 'content-length': String(encoder.encode(body).length) }
        })
        expect([200, 201, 400, 409, 413]).toContain(res.status)
        const json = (await res.json()) as { error?: { code: unknown; message: unknown; issues: unknown } }
        if (res.status >= 400) expect([typeof json.error?.code, typeof json.error?.message, Array.isArray(json.error?.issues)]).toEqual(['string', 'string', true])
      }),
      { numRuns: RUNS }
    )
  })
})
