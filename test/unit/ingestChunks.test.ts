import { describe, expect, test } from 'bun:test'
import { waitFor } from '../../src/node/events.ts'
import { INGEST_CHUNK } from '../../src/sync/plan.ts'
import { eventFile, forger, headOf, honestTree, seqsOf, victim } from '../adversary/walkForge.ts'

describe('a catch-up holds a bounded number of files at once', () => {
  test('a backlog of twice INGEST_CHUNK and more is stored in chunks of at most INGEST_CHUNK, whatever max-files-per-walk allows', async () => {
    const p = await forger()
    const n = 2 * INGEST_CHUNK + 52
    const files = []
    for (let seq = 1; seq <= n; seq++) files.push(await eventFile(p, seq))
    // max-files-per-walk 20,000 (the default) would allow the whole backlog in one chunk
    const v = await victim([p], { maxFilesPerWalk: 20_000 })
    const chunks: number[] = []
    v.events.addEventListener('events:ingested', (e) => {
      chunks.push(e.detail.length)
    })
    const idle = waitFor(v.events, 'sync:idle', { signal: AbortSignal.timeout(60_000), filter: () => v.store.producers.get(p.id)?.processed_seq === n })
    await v.syncer.offerHead(await headOf(p, n, await honestTree(p, files)))
    await idle
    expect(chunks).toEqual([INGEST_CHUNK, INGEST_CHUNK, 52])
    expect(seqsOf(v.store, p.id)).toEqual(Array.from({ length: n }, (_, i) => i + 1))
    await v.syncer.stop()
  })
})
