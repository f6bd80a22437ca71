import { describe, expect, test } from 'bun:test'
import type { SqliteBlockstore, StoredBlock } from '../../src/store/blockstore.ts'
import { waitFor } from '../../src/node/events.ts'
import { collectGarbage } from '../../src/housekeeping/gc.ts'
import { withBlocks } from '../../src/model/head.ts'
import { fetcherOver, hintedConsumer, hintedProducer } from '../helpers/hinted.ts'
import { waitFor as until } from '../helpers/process.ts'

const RAW = 0x55

/**
 * A fetcher (made over a block store by `over`) whose network answers only when the test releases a block:
 * what bitswap fetches it stores, as Helia's networked blockstore does.
 */
function gatedNetwork(network: Map<string, Uint8Array>) {
  const asked: string[] = []
  let release: () => void = () => {}
  const released = new Promise<void>((resolve) => {
    release = resolve
  })
  const over = (blocks: SqliteBlockstore) =>
    fetcherOver(
      blocks,
      (cid) =>
        (async function* () {
          asked.push(cid.toString())
          await released
          const bytes = network.get(cid.toString())
          if (bytes == null) throw new Error(`no peer has ${cid.toString()}`)
          blocks.putSync(cid, bytes)
          yield bytes
        })(),
      10_000
    )
  return { over, asked, release }
}

describe('garbage collection during a walk that holds blocks taken from the hints', () => {
  test('keeps the stored blocks that the walk reached through them', async () => {
    // The producer: two commits, one event each, in one hour.
    const { outbox, commits } = await hintedProducer()
    await outbox.publish({ type: 'test.gc', payload: { i: 1 } })
    await outbox.publish({ type: 'test.gc', payload: { i: 2 } })
    const fileOf = (c: { blocks: StoredBlock[] }): StoredBlock => {
      const files = c.blocks.filter((b) => b.cid.code === RAW)
      expect(files.length).toBe(1)
      return files[0]
    }
    const f1 = fileOf(commits[0])
    const f2 = fileOf(commits[1])

    // The consumer holds the blocks of commit 1 without any root reaching them (the walk to it was
    // superseded by commit 2's head and stored what it had taken when it ended).
    const { over, asked, release } = gatedNetwork(new Map([[f2.cid.toString(), f2.bytes]]))
    const { store, blocks, fetcher, syncer, events } = await hintedConsumer(over, 10_000)
    blocks.putAll(commits[0].blocks)

    // Commit 2's hint carries its directories but not its file, which comes from the network, late.
    const carried = commits[1].blocks.filter((b) => !b.cid.equals(f2.cid))
    await syncer.offerHead(withBlocks(commits[1].head, carried))
    await until('the walk to ask the network for the second file', () => asked.includes(f2.cid.toString()), 10_000)
    // The walk read file 1 from the store, below directories it took from the hint and holds in memory.
    await collectGarbage(store, blocks, {
      walking: () => syncer.walkingRoots(),
      flushWalks: () => {
        fetcher.flushWalks()
      },
      exclusive: async (fn) => fn()
    })
    const idle = waitFor(events, 'sync:idle', { signal: AbortSignal.timeout(10_000) })
    release()
    await idle
    await syncer.stop()

    const row = store.producers.all().find((r) => r.producer !== 'consumer')!
    expect(row.processed_seq).toBe(2)
    expect(row.synced_root).toBe(row.head_root)
    expect(store.db.get<{ n: number }>('SELECT count(*) AS n FROM events')?.n).toBe(2)
    // Every block of the synced tree is held: file 1's row is there, so must its file be.
    expect(blocks.has(f1.cid)).toBe(true)
    for (const b of commits[1].blocks) expect(blocks.has(b.cid)).toBe(true)
  })
})
