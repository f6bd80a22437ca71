import { describe, expect, test } from 'bun:test'
import { NodeProcess, tempDir, waitFor } from './helpers/process.ts'
import { query } from './helpers/db.ts'

describe('the swarm', () => {
  test('two nodes with the same swarm key connect', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    await a.start()
    await b.start(['--bootstrap', a.addrs[0]])
    await waitFor('a and b to see each other', async () => (await a.status()).peers.includes(b.peerId) && (await b.status()).peers.includes(a.peerId))
    expect(await b.stop()).toBe(0)
    expect(await a.stop()).toBe(0)
  })

  test('a node with another swarm key can neither connect nor deliver an event', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using stranger = await NodeProcess.init(tmp.path, 'stranger')
    await a.start()
    await stranger.start(['--bootstrap', a.addrs[0]])
    await stranger.publish({ type: 'test.hello', payload: { from: 'stranger' } })
    // Two failed dial rounds of the bootstrap loop (every 5 s) prove it kept trying and failing.
    await waitFor('two refused dials', () => (stranger.logs.match(/cannot reach bootstrap peer/g)?.length ?? 0) >= 2, 30_000)
    expect((await stranger.status()).peers).toEqual([])
    expect((await a.status()).peers).toEqual([])
    expect(query(a.dir, 'SELECT count(*) AS n FROM events')).toEqual([{ n: 0 }])
  })

  test('a multi-megabyte payload crosses between two nodes (noise with pure-JS crypto under Bun)', async () => {
    using tmp = tempDir()
    const big = ['--max-event-size', '3MiB', '--max-body-size', '4MiB']
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    await a.start(big)
    await b.start([...big, '--bootstrap', a.addrs[0]])
    const blob = Array.from({ length: 2_500_000 / 50 }, (_, i) => `${String(i).padStart(10, '0')}-${'abcdefghijklmnopqrstuvwxyz0123456789'.slice(0, 39)}`).join('')
    const r = await a.publish({ type: 'test.blob', payload: { blob } })
    const rows = await waitFor(
      'the blob on b',
      () => {
        const found = query<{ payload: string }>(b.dir, 'SELECT payload FROM events WHERE event_id = ?', [r.event_id])
        return found.length === 1 ? found : undefined
      },
      60_000
    )
    expect(JSON.parse(rows[0].payload).blob.length).toBe(blob.length)
    expect(JSON.parse(rows[0].payload).blob === blob).toBe(true)
  })
})
