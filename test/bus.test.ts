import { describe, expect, test } from 'bun:test'
import { createReadStream } from 'node:fs'
import { join } from 'node:path'
import { CarReader } from '@ipld/car'
import { exporter, recursive } from 'ipfs-unixfs-exporter'
import { cairn, NodeProcess, publishMany, tempDir, waitFor } from './helpers/process.ts'
import { eventCount, query } from './helpers/db.ts'

const fingerprint = (dir: string, producer: string): Array<{ event_id: string; seq: number; payload: string }> =>
  query(dir, 'SELECT event_id, seq, payload FROM events WHERE producer = ? ORDER BY seq', [producer])

describe('the bus', () => {
  test("three nodes hold exactly the 1,000 events A publishes, and B's events reach C", async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    await using c = await NodeProcess.init(tmp.path, 'c', { network: a })
    await a.start()
    await b.start(['--bootstrap', a.addrs[0]])
    await c.start(['--bootstrap', a.addrs[0]])
    const published = await publishMany(a, 1000, (i) => ({ type: 'test.counted', payload: { i } }))
    expect(published.map((p) => p.seq).sort((x, y) => x - y)).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1))
    const expected = fingerprint(a.dir, a.peerId)
    expect(expected.length).toBe(1000)
    for (const n of [b, c]) {
      await waitFor(`1000 events on ${n.dir}`, () => eventCount(n.dir) === 1000, 60_000)
      expect(fingerprint(n.dir, a.peerId)).toEqual(expected)
    }
    const fromB = await publishMany(b, 10, (i) => ({ type: 'test.from-b', payload: { i } }))
    await waitFor("b's events on c", () => fingerprint(c.dir, b.peerId).length === 10, 30_000)
    expect(
      fingerprint(c.dir, b.peerId)
        .map((e) => e.event_id)
        .sort()
    ).toEqual(fromB.map((e) => e.event_id).sort())
  })

  test('a node that was down catches up from a peer while the producer is offline', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    await using c = await NodeProcess.init(tmp.path, 'c', { network: a })
    await a.start()
    await b.start(['--bootstrap', a.addrs[0]])
    await publishMany(a, 500, (i) => ({ type: 'test.offline', payload: { i } }))
    await waitFor('500 events on b', () => eventCount(b.dir) === 500, 60_000)
    expect(await a.stop()).toBe(0)
    await c.start(['--bootstrap', b.addrs[0]])
    await waitFor('500 events on c', () => eventCount(c.dir) === 500, 60_000)
    expect(fingerprint(c.dir, a.peerId)).toEqual(fingerprint(b.dir, a.peerId))
  })

  test('with gossip hints switched off nodes converge through the head exchange alone', async () => {
    using tmp = tempDir()
    const quiet = ['--gossip-hints', 'false']
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    await a.start(quiet)
    await b.start([...quiet, '--bootstrap', a.addrs[0]])
    await publishMany(a, 50, (i) => ({ type: 'test.quiet', payload: { i } }))
    await publishMany(b, 50, (i) => ({ type: 'test.quiet', payload: { i } }))
    await waitFor('100 events on both', () => eventCount(a.dir) === 100 && eventCount(b.dir) === 100, 60_000)
    expect(a.logs + b.logs).not.toContain('gossip publish')
  })

  test('three producers publishing at once reach each other by gossip alone, with the re-announce out of the way', async () => {
    using tmp = tempDir()
    // No re-announce during the test: every head must travel by gossip (or the exchange on connect),
    // including through the middle node, and no walk may hang on a block its relay never held.
    const noReannounce = ['--announce-interval', '1h']
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    await using c = await NodeProcess.init(tmp.path, 'c', { network: a })
    await a.start(noReannounce)
    await b.start([...noReannounce, '--bootstrap', a.addrs[0]])
    await c.start([...noReannounce, '--bootstrap', a.addrs[0]])
    await waitFor('a connected to both', async () => (await a.status()).peers.length >= 2, 30_000)
    await Promise.all(
      [a, b, c].map(async (n, k) => {
        await publishMany(n, 200, (i) => ({ type: 'test.many', payload: { k, i } }), 4)
      })
    )
    for (const n of [a, b, c]) await waitFor(`600 events on ${n.dir}`, () => eventCount(n.dir) === 600, 30_000)
    for (const n of [a, b, c]) expect(query<{ last_error: string | null }>(n.dir, 'SELECT last_error FROM producers WHERE last_error IS NOT NULL')).toEqual([])
  })

  test('re-publishing an event_id returns the first result flagged as a replay, refuses it with another request, and adds no second row of that producer anywhere', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    await a.start()
    await b.start(['--bootstrap', a.addrs[0]])
    const id = '0190b2a4-0000-7000-8000-000000000001'
    const first = await a.publish({ type: 'test.once', payload: { n: 1 }, event_id: id })
    const again = await a.publish({ type: 'test.once', payload: { n: 1 }, event_id: id })
    expect(again).toEqual({ ...first, replayed: true })
    await expect(a.publish({ type: 'test.once', payload: { n: 2 }, event_id: id })).rejects.toThrow('409')
    const cli = await cairn(['publish', '--data', a.dir, '--type', 'test.once', '--payload', '{"n":1}', '--id', id])
    expect(JSON.parse(cli.stdout)).toEqual({ ...first, replayed: true })
    const other = await cairn(['publish', '--data', a.dir, '--type', 'test.once', '--payload', '{"n":3}', '--id', id])
    expect([other.code, other.stderr]).toEqual([1, expect.stringContaining(`was used for event ${id}`)])
    // idempotency is per producer: the same event_id published on another node is that node's own event
    await waitFor('the event on b', () => eventCount(b.dir) === 1, 30_000)
    const onB = await b.publish({ type: 'test.once', payload: { n: 4 }, event_id: id })
    expect(onB.seq).toBe(1)
    expect(onB.cid).not.toBe(first.cid)
    expect(await b.publish({ type: 'test.once', payload: { n: 4 }, event_id: id })).toEqual({ ...onB, replayed: true })
    const marker = await b.publish({ type: 'test.marker', payload: {} })
    await waitFor('the marker on a', () => query(a.dir, 'SELECT 1 FROM events WHERE event_id = ?', [marker.event_id]).length === 1, 30_000)
    for (const n of [a, b]) expect(query(n.dir, 'SELECT count(*) AS n FROM events WHERE event_id = ?', [id])).toEqual([{ n: 2 }])
  })

  test('a batch (POST an array, or cairn publish --batch) commits whole, answers in order, and a bad event refuses all of it', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await a.start()
    const id = '0190b2a4-0000-7000-8000-0000000000b1'
    const lines = [
      { type: 'test.batch', payload: { i: 1 } },
      { type: 'test.batch', payload: { i: 2 }, event_id: id }
    ]
    const cli = await cairn(['publish', '--data', a.dir, '--batch', '-'], { stdin: lines.map((l) => JSON.stringify(l)).join('\n') + '\n' })
    expect(cli.code).toBe(0)
    const results = cli.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { seq: number; event_id: string })
    expect(results.map((r) => r.seq)).toEqual([1, 2])
    expect(results[1].event_id).toBe(id)
    // A key twice in one batch is refused, naming the line.
    const twice = await cairn(['publish', '--data', a.dir, '--batch', '-'], {
      stdin: [...lines, { type: 'test.batch', payload: { i: 3 }, event_id: id }].map((l) => JSON.stringify(l)).join('\n') + '\n'
    })
    expect([twice.code, twice.stderr]).toEqual([1, expect.stringContaining('line 3.event_id: repeats the idempotency key of line 2')])
    const heads = query<{ head_seq: number }>(a.dir, 'SELECT head_seq FROM producers')
    expect(heads).toEqual([{ head_seq: 2 }])

    const bad = await cairn(['publish', '--data', a.dir, '--batch', '-'], { stdin: '{"type":"test.batch","payload":{}}\n{"type":"Not A Type","payload":{}}\n' })
    expect(bad.code).not.toBe(0)
    expect(bad.stderr).toContain('line 2')
    expect(bad.stderr).toContain('nothing was published')
    const res = await fetch(`http://${a.http}/v1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${a.token}`, 'content-type': 'application/json' },
      body: JSON.stringify([
        { type: 'test.batch', payload: {} },
        { type: 'Bad Type', payload: {} }
      ])
    })
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: { issues: Array<{ path: string }> } }).error.issues[0].path).toStartWith('[1].')
    expect(eventCount(a.dir)).toBe(2)
    // 1,000 events of 1.2 KB are over the 1 MiB body limit: cairn publish --batch splits them by bytes.
    const big = Array.from({ length: 1000 }, (_, i) => JSON.stringify({ type: 'test.big', payload: { i, pad: 'x'.repeat(1200) } })).join('\n')
    const split = await cairn(['publish', '--data', a.dir, '--batch', '-'], { stdin: big })
    expect([split.code, split.stdout.trim().split('\n').length]).toEqual([0, 1000])
    expect(eventCount(a.dir)).toBe(1002)
  })

  test('a Deno node and a binary node exchange events both ways, one over 1,200 bytes', async () => {
    using tmp = tempDir()
    await using bin = await NodeProcess.init(tmp.path, 'bin')
    await using deno = await NodeProcess.init(tmp.path, 'deno', { network: bin, runtime: 'deno' })
    await bin.start()
    await deno.start(['--bootstrap', bin.addrs[0]])
    expect(await (await fetch(`http://${deno.http}/healthz`)).json()).toEqual({ status: 'ok' })
    const large = 'x'.repeat(5000)
    const fromBin = await bin.publish({ type: 'test.cross', payload: { large } })
    const fromDeno = await deno.publish({ type: 'test.cross', payload: { large, from: 'deno' } })
    await waitFor('both events on both nodes', () => eventCount(bin.dir) === 2 && eventCount(deno.dir) === 2, 60_000)
    const ids = (dir: string) => query<{ event_id: string }>(dir, 'SELECT event_id FROM events ORDER BY event_id').map((r) => r.event_id)
    expect(ids(bin.dir)).toEqual([fromBin.event_id, fromDeno.event_id].sort())
    expect(ids(deno.dir)).toEqual(ids(bin.dir))
    expect(JSON.parse(query<{ payload: string }>(bin.dir, 'SELECT payload FROM events WHERE event_id = ?', [fromDeno.event_id])[0].payload).large).toBe(large)
  })

  test('cairn export writes a CAR that standard IPFS libraries list as exactly the events cairn events shows', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    await a.start()
    await b.start(['--bootstrap', a.addrs[0]])
    await publishMany(a, 30, (i) => ({ type: 'test.export', payload: { i } }))
    await publishMany(b, 20, (i) => ({ type: 'test.export', payload: { i } }))
    await waitFor('50 events on b', () => eventCount(b.dir) === 50, 30_000)
    await waitFor('b to hold both trees', async () => (await b.status()).syncing === false)
    const car = join(tmp.path, 'bus.car')
    const r = await cairn(['export', '--data', b.dir, '--car', car])
    expect(r.code).toBe(0)

    const reader = await CarReader.fromIterable(createReadStream(car))
    const [root] = await reader.getRoots()
    const blockstore = {
      get: async function* (cid: any) {
        const b = await reader.get(cid)
        if (b == null) throw new Error(`missing ${cid}`)
        yield b.bytes
      }
    }
    const files: Array<{ path: string; content: any }> = []
    for await (const entry of recursive(root, blockstore as any)) {
      const node = await exporter(entry.cid, blockstore as any)
      if (node.type === 'file' || node.type === 'raw') {
        const parts: Uint8Array[] = []
        for await (const p of node.content()) parts.push(p as Uint8Array)
        files.push({ path: entry.path, content: JSON.parse(Buffer.concat(parts).toString('utf8')) })
      }
    }
    const listed = (await cairn(['events', '--data', b.dir, '--json', '--limit', '1000'])).stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    const fromCar = files
      .map((f) => ({ producer: f.path.split('/')[1], name: f.path.split('/').at(-1), event_id: f.content.event_id, seq: f.content.seq, payload: f.content.payload }))
      .sort((x, y) => x.event_id.localeCompare(y.event_id))
    const fromCli = listed
      .map((e) => ({ producer: e.producer, name: `${String(e.seq).padStart(12, '0')}-${e.event_id}.json`, event_id: e.event_id, seq: e.seq, payload: e.payload }))
      .sort((x, y) => x.event_id.localeCompare(y.event_id))
    expect(fromCar.length).toBe(50)
    expect(fromCar).toEqual(fromCli)
  })
})
