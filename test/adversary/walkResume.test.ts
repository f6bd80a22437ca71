import { describe, expect, test } from 'bun:test'
import { waitFor as waitForEvent } from '../../src/node/events.ts'
import { waitFor } from '../helpers/process.ts'
import { canonicalJson } from '../../src/model/canonical.ts'
import { fileName } from '../../src/model/layout.ts'
import { fileBlock } from '../../src/unixfs/tree.ts'
import { eventFile, forger, headOf, honestTree, seqsOf, victim } from './walkForge.ts'

describe('a catch-up interrupted in its last chunk', () => {
  test('is walked again within its budget: the directories since the last whole walk count, not only the events left', async () => {
    const p = await forger()
    const files: Awaited<ReturnType<typeof eventFile>>[] = []
    for (let seq = 1; seq <= 600; seq++) files.push(await eventFile(p, seq))
    const head = await headOf(p, 600, await honestTree(p, files))
    // The file of seq 595 cannot be fetched at the first try: the walk stops after storing seqs up to 590.
    let failed = false
    const { syncer, store, events } = await victim([p], {
      maxFilesPerWalk: 10,
      before: (cid) => {
        if (!failed && cid.equals(files[594].cid)) {
          failed = true
          throw new Error('the peer went away')
        }
      }
    })
    const idle = waitForEvent(events, 'sync:idle', {
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

describe('a walk held for an event stamped ahead', () => {
  test('is not hurried by newer heads: they neither list nor read the tree again until the event is due', async () => {
    const p = await forger()
    const year = 365 * 86_400_000
    const files = [await eventFile(p, 1)]
    const envelope = {
      event_id: '01900000-0000-7000-8000-000000000a11',
      type: 'test.walk',
      version: 1,
      producer: p.id,
      seq: 2,
      hlc: `${Date.now() + year}-0000`,
      occurred_at: new Date().toISOString(),
      payload: {}
    }
    const bytes = new TextEncoder().encode(canonicalJson(envelope))
    const block = await fileBlock(bytes)
    p.blocks.set(block.cid.toString(), block.bytes)
    files.push({ name: fileName(2, envelope.event_id), cid: block.cid, size: bytes.length })
    const v = await victim([p])
    await v.syncer.offerHead(await headOf(p, 2, await honestTree(p, files)))
    await waitFor('the walk to hold the event', () => v.store.producers.get(p.id)?.last_error?.includes('clock') === true)
    expect(seqsOf(v.store, p.id)).toEqual([1])
    const reads = v.reads.n
    for (let seq = 3; seq <= 7; seq++) {
      files.push(await eventFile(p, seq))
      await v.syncer.offerHead(await headOf(p, seq, await honestTree(p, files)))
    }
    // Had a newer head started a walk, it would have read the new root at once.
    expect(v.reads.n).toBe(reads)
    await v.syncer.stop()
    v.store.close()
  })
})
