import { describe, expect, test } from 'bun:test'
import type { CID } from 'multiformats/cid'
import { silentLog } from '../../src/log/logger.ts'
import { Metrics } from '../../src/metrics/metrics.ts'
import { HybridClock } from '../../src/model/hlc.ts'
import { CairnEventBus, waitFor } from '../../src/node/events.ts'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { Store } from '../../src/store/store.ts'
import { syncer as createSyncer } from '../../src/sync/syncer.ts'
import { eventFile, forger, headOf, honestTree, seqsOf } from './walkForge.ts'

describe('a catch-up interrupted in its last chunk', () => {
  test('is walked again within its budget: the directories since the last whole walk count, not only the events left', async () => {
    const p = await forger()
    const files: Awaited<ReturnType<typeof eventFile>>[] = []
    for (let seq = 1; seq <= 600; seq++) files.push(await eventFile(p, seq))
    const head = await headOf(p, 600, await honestTree(p, files))
    const db = await openDatabase(':memory:')
    migrate(db)
    const store = new Store(db)
    const events = new CairnEventBus()
    // The file of seq 595 cannot be fetched at the first try: the walk stops after storing seqs up to 590.
    let failed = false
    const syncer = createSyncer({
      getBlock: async (cid: CID) => {
        if (!failed && cid.equals(files[594].cid)) {
          failed = true
          throw new Error('the peer went away')
        }
        const b = p.blocks.get(cid.toString())
        if (b == null) throw new Error(`missing ${cid}`)
        return b
      },
      limits: { maxEventSize: 256 * 1024, maxDepth: 64, maxFilesPerWalk: 10 },
      fetchTimeout: 5000
    })({ self: 'victim', store, clock: new HybridClock(), log: silentLog, metrics: new Metrics(), events })
    syncer.start()
    const idle = waitFor(events, 'sync:idle', {
      signal: AbortSignal.timeout(60_000),
      filter: () => seqsOf(store, p.id).length === 600 || store.producers.get(p.id)?.last_error?.includes('over_budget') === true
    })
    await syncer.offerHead(head)
    await idle
    expect({ events: seqsOf(store, p.id).length, error: store.producers.get(p.id)?.last_error ?? null }).toEqual({ events: 600, error: null })
    await syncer.stop()
    store.close()
  })
})
