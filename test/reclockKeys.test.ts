import { Database } from 'bun:sqlite'
import { describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { uuidv7 } from 'uuidv7'
import { RUN_SETTINGS, toNodeConfig } from '../src/config/catalog.ts'
import { resolveSettings } from '../src/config/resolve.ts'
import { initDataDir } from '../src/datadir/init.ts'
import { silentLog } from '../src/log/logger.ts'
import { CairnNode } from '../src/node/node.ts'
import { reclock } from '../src/node/reclock.ts'
import { BUILTIN_PLUGINS } from '../plugins/mod.ts'
import { query } from './helpers/db.ts'
import { cairn, tempDir } from './helpers/process.ts'

const YEAR_MS = 365 * 86_400_000

const flagsOf = (dir: string): Record<string, unknown> => ({
  data: dir,
  listen: ['/ip4/127.0.0.1/tcp/0'],
  http: '127.0.0.1:0',
  'allow-unknown-types': true
})

/** Starts a node in this process whose wall clock is `offsetMs` off. */
async function node(dir: string, offsetMs = 0): Promise<CairnNode> {
  const config = toNodeConfig(resolveSettings(RUN_SETTINGS, flagsOf(dir), {}, {}))
  const n = new CairnNode(config, { log: silentLog, plugins: BUILTIN_PLUGINS, now: () => Date.now() + offsetMs })
  await n.start()
  return n
}

interface Answer {
  status: number
  body: any
}

/** POST /v1/events as a backend does, with an Idempotency-Key header when `key` is given. */
async function post(n: CairnNode, dir: string, body: unknown, key?: string): Promise<Answer> {
  const headers: Record<string, string> = { 'content-type': 'application/json', authorization: `Bearer ${readFileSync(join(dir, 'api.token'), 'utf8').trim()}` }
  if (key != null) headers['idempotency-key'] = key
  const res = await fetch(`http://127.0.0.1:${n.http!.port}/v1/events`, { method: 'POST', headers, body: JSON.stringify(body) })
  return { status: res.status, body: await res.json() }
}

/** The requests a backend sent while the node's clock ran a year ahead, as it would send them again. */
function originals(u: string) {
  return {
    // A single event under an Idempotency-Key header, without a version (v1), with an actor.
    keyed: { body: { type: 'test.e', payload: { n: 'keyed' }, actor: 'alice@example.com' }, key: 'order-7' },
    // A single event whose event_id (a UUIDv7) is its key and its id, at an explicit version.
    uuid: { body: { event_id: u, type: 'test.e', version: 2, payload: { n: 'uuid' }, correlation_id: 'c-1' } },
    // A single event without any key.
    bare: { body: { type: 'test.e', payload: { n: 'bare' } } },
    // A batch under an Idempotency-Key header: its events have the keys batch-9#0 and batch-9#1.
    batch: {
      body: [
        { type: 'test.e', payload: { n: 'b0' } },
        { type: 'test.e', payload: { n: 'b1' }, causation_id: 'x' }
      ],
      key: 'batch-9'
    }
  }
}

/**
 * A node that published seq 1 with its clock right, then seqs 2..6 a year ahead (under the keys of
 * `originals`), stopped, and was reclocked once its clock was set right: seqs 2..6 are withdrawn, its head is 6.
 */
async function withdrawn(parent: string): Promise<{ dir: string; file: string; u: string; ids: Record<string, string> }> {
  const dir = join(parent, 'n')
  await initDataDir(dir, { newNetwork: true })
  let n = await node(dir)
  await n.publish({ type: 'test.e', payload: { n: 0 } })
  await n.stop()
  const u = uuidv7()
  const o = originals(u)
  n = await node(dir, YEAR_MS)
  const ids: Record<string, string> = {}
  try {
    ids.keyed = (await post(n, dir, o.keyed.body, o.keyed.key)).body.event_id
    ids.uuid = (await post(n, dir, o.uuid.body)).body.event_id
    ids.bare = (await post(n, dir, o.bare.body)).body.event_id
    const batch = (await post(n, dir, o.batch.body, o.batch.key)).body
    expect(batch.map((r: { seq: number }) => r.seq)).toEqual([5, 6])
  } finally {
    await n.stop()
  }
  expect(ids.uuid).toBe(u)
  const report = await reclock(toNodeConfig(resolveSettings(RUN_SETTINGS, flagsOf(dir), {}, {})))
  expect(report.withdrawn).toMatchObject({ count: 5, from_seq: 2, to_seq: 6 })
  return { dir, file: report.republish_file!, u, ids }
}

/** @returns the JSON values of a text with one a line (a republish file, or what `cairn publish --batch` printed) */
const ndjson = (text: string): any[] =>
  text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))

const lines = (file: string): Array<Record<string, unknown>> => ndjson(readFileSync(file, 'utf8'))

describe('cairn reclock carries the idempotency keys of the events it withdraws', () => {
  test('the republish file holds each request under its original key; an event published without one gets a new UUIDv7', async () => {
    using tmp = tempDir()
    const { dir, file, u, ids } = await withdrawn(tmp.path)
    const requests = lines(file)
    expect(requests.map((r) => r.event_id)).toEqual(['order-7', u, expect.stringMatching(/^[0-9a-f-]{36}$/), 'batch-9#0', 'batch-9#1'])
    expect(requests[2].event_id).not.toBe(ids.bare)
    expect(requests[0]).toEqual({ event_id: 'order-7', type: 'test.e', version: 1, payload: { n: 'keyed' }, actor: 'alice@example.com' })
    // The withdrawn rows keep their event_ids and seqs, not their keys: a key names what a retry is answered with.
    expect(query(dir, 'SELECT seq, idempotency_key FROM outbox WHERE seq >= 2 ORDER BY seq')).toEqual([2, 3, 4, 5, 6].map((seq) => ({ seq, idempotency_key: null })))
    expect(query(dir, 'SELECT seq FROM outbox WHERE event_id = ?', [u])).toEqual([{ seq: 3 }])
  }, 60_000)

  test("a backend's retries come first: each publishes its event anew, and publishing the file then publishes nothing twice", async () => {
    using tmp = tempDir()
    const { dir, file, u, ids } = await withdrawn(tmp.path)
    const o = originals(u)
    const n = await node(dir)
    try {
      // Not `replayed` with the withdrawn seq, which no peer will ever take: published again, stamped right.
      const keyed = await post(n, dir, o.keyed.body, o.keyed.key)
      expect(keyed).toMatchObject({ status: 201, body: { seq: 7, replayed: false } })
      expect(keyed.body.event_id).not.toBe(ids.keyed)
      expect(await post(n, dir, o.uuid.body)).toMatchObject({ status: 201, body: { event_id: u, seq: 8, replayed: false } })
      const batch = await post(n, dir, o.batch.body, o.batch.key)
      expect(batch.body.map((r: { seq: number; replayed: boolean }) => [r.seq, r.replayed])).toEqual([
        [9, false],
        [10, false]
      ])
      // The same key with another request is still refused.
      expect(await post(n, dir, { ...o.keyed.body, payload: { n: 'other' } }, o.keyed.key)).toMatchObject({ status: 409, body: { error: { code: 'idempotency_key_reused' } } })

      // The file's requests match what the backend sent (a version omitted is v1): replayed, but the bare one.
      const published = await cairn(['publish', '--data', dir, '--batch', file], { runtime: 'bun' })
      expect(published.stderr).toBe('')
      expect(published.code).toBe(0)
      const results = ndjson(published.stdout)
      expect(results.map((r) => [r.seq, r.replayed])).toEqual([
        [7, true],
        [8, true],
        [11, false],
        [9, true],
        [10, true]
      ])
      expect(results[0].event_id).toBe(keyed.body.event_id)
      // Twice: nothing new.
      const again = await cairn(['publish', '--data', dir, '--batch', file], { runtime: 'bun' })
      expect(ndjson(again.stdout).map((r) => r.seq)).toEqual([7, 8, 11, 9, 10])
      expect(n.store.outbox.lastSeq()).toBe(11)
      // The own events table holds the UUIDv7-keyed event again, at its new seq, under its old event_id.
      expect(query(dir, 'SELECT seq FROM events WHERE event_id = ?', [u])).toEqual([{ seq: 8 }])
      expect(query(dir, 'SELECT seq FROM outbox WHERE event_id = ? ORDER BY seq', [u])).toEqual([{ seq: 3 }, { seq: 8 }])
    } finally {
      await n.stop()
    }
  }, 90_000)

  test("the file is published first: a backend's retries with the same keys and requests are answered with what it published", async () => {
    using tmp = tempDir()
    const { dir, file, u } = await withdrawn(tmp.path)
    const o = originals(u)
    const n = await node(dir)
    try {
      const published = await cairn(['publish', '--data', dir, '--batch', file], { runtime: 'bun' })
      expect(published.code).toBe(0)
      const results = ndjson(published.stdout)
      expect(results.map((r) => [r.seq, r.replayed])).toEqual([
        [7, false],
        [8, false],
        [9, false],
        [10, false],
        [11, false]
      ])
      expect(results[1].event_id).toBe(u)

      expect(await post(n, dir, o.keyed.body, o.keyed.key)).toMatchObject({ status: 200, body: { event_id: results[0].event_id, seq: 7, replayed: true } })
      // With the version the file spelled out (1), the same request.
      expect(await post(n, dir, { ...o.keyed.body, version: 1 }, o.keyed.key)).toMatchObject({ status: 200, body: { seq: 7, replayed: true } })
      expect(await post(n, dir, o.uuid.body)).toMatchObject({ status: 200, body: { event_id: u, seq: 8, replayed: true } })
      const batch = await post(n, dir, o.batch.body, o.batch.key)
      expect(batch.body.map((r: { seq: number; replayed: boolean }) => [r.seq, r.replayed])).toEqual([
        [10, true],
        [11, true]
      ])
      expect(n.store.outbox.lastSeq()).toBe(11)
      expect(query(dir, 'SELECT seq FROM events WHERE event_id = ?', [u])).toEqual([{ seq: 8 }])
    } finally {
      await n.stop()
    }
  }, 90_000)

  test('a request rebuilt from the event that would not match the one it was published from (a key 409 either way) stops the run: nothing is withdrawn', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'n')
    await initDataDir(dir, { newNetwork: true })
    let n = await node(dir)
    await n.publish({ type: 'test.e', payload: { n: 0 } })
    await n.stop()
    n = await node(dir, YEAR_MS)
    try {
      await n.publish({ type: 'test.e', payload: { n: 1 } }, 'order-8')
    } finally {
      await n.stop()
    }
    // Stands for a request whose envelope does not say all it hashed.
    const db = new Database(join(dir, 'cairn.db'))
    db.run("UPDATE outbox SET request_hash = 'another' WHERE seq = 2")
    db.close()
    const config = toNodeConfig(resolveSettings(RUN_SETTINGS, flagsOf(dir), {}, {}))
    await expect(reclock(config)).rejects.toThrow(
      /the publish request rebuilt from own seq 2 does not match the request it was published from \(its idempotency key "order-8" would refuse one of them\); nothing was withdrawn/
    )
    expect(query(dir, 'SELECT seq, idempotency_key FROM outbox WHERE pruned_at IS NULL ORDER BY seq')).toEqual([
      { seq: 1, idempotency_key: null },
      { seq: 2, idempotency_key: 'order-8' }
    ])
  }, 60_000)
})
