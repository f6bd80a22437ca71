import { describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CarReader } from '@ipld/car'
import { CID } from 'multiformats/cid'
import { writeBusCar, type CarSink } from '../../src/cli/verbs/bus.ts'
import { collectGarbage } from '../../src/housekeeping/gc.ts'
import { openBlockDatabase, SqliteBlockstore } from '../../src/store/blockstore.ts'
import { Store } from '../../src/store/store.ts'
import { directoryBlock, fileBlockSync } from '../../src/unixfs/tree.ts'
import { readTrees } from '../../src/unixfs/walk.ts'

/** A data directory's two databases, opened twice: once as the node holds them, once as a CLI verb does. */
async function twoProcesses() {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-export-'))
  const node = { store: await Store.open(join(dir, 'cairn.db')), blocks: new SqliteBlockstore(await openBlockDatabase(join(dir, 'blocks.db'))) }
  const cli = { store: await Store.open(join(dir, 'cairn.db')), blocks: new SqliteBlockstore(await openBlockDatabase(join(dir, 'blocks.db'))) }
  let seq = 0
  /** Stores a tree of `n` files and makes it producer p's synced root. @returns its CIDs */
  const commit = async (tag: string, n: number): Promise<string[]> => {
    const files = Array.from({ length: n }, (_, i) => fileBlockSync(new TextEncoder().encode(JSON.stringify({ tag, i }))))
    const root = await directoryBlock(files.map((f, i) => ({ name: `${tag}-${i}.json`, cid: f.cid, size: f.bytes.length })))
    for (const b of [...files, root]) node.blocks.putSync(b.cid, b.bytes)
    seq++
    const head = { producer: 'p', seq, root: root.cid.toString(), hlc: `${seq}`, acks: {}, signed: new Uint8Array([seq]), receivedAt: Date.now() }
    node.store.producers.putHead(head, { root: head.root, processedSeq: seq })
    return [root, ...files].map((b) => b.cid.toString())
  }
  const close = (): void => {
    for (const side of [cli, node]) {
      side.blocks.db.close()
      side.store.close()
    }
    rmSync(dir, { recursive: true, force: true })
  }
  return { dir, node, cli, commit, close }
}

/** A sink that keeps the CAR in memory and runs `first` before taking its first chunk. */
function memorySink(first?: () => Promise<void>) {
  const cars: Uint8Array[][] = []
  return {
    cars,
    open: async (): Promise<CarSink> => {
      const chunks: Uint8Array[] = []
      cars.push(chunks)
      return {
        write: async (chunk) => {
          if (cars.length === 1 && chunks.length === 0) await first?.()
          chunks.push(chunk.slice())
        },
        close: async () => {}
      }
    }
  }
}

describe('cairn export beside a running node', () => {
  test('reads one snapshot: a collection that deletes the tree mid-export does not break it', async () => {
    const t = await twoProcesses()
    try {
      const old = await t.commit('old', 50)
      let collected = 0
      const sink = memorySink(async () => {
        // The node commits a tree that replaces the old one and collects it, while the CAR is being written.
        await t.commit('new', 5)
        collected = (await collectGarbage(t.node.store, t.node.blocks, { exclusive: async (fn) => fn() })).blocks
        expect(old.map((c) => t.node.blocks.has(CID.parse(c)))).toEqual(old.map(() => false))
      })
      const r = await writeBusCar(t.cli.store, t.cli.blocks, sink.open)
      expect(collected).toBe(51)
      if ('missing' in r) throw new Error(`missing ${r.missing}`)
      // One attempt, and it holds the old tree whole.
      expect(sink.cars.length).toBe(1)
      const reader = await CarReader.fromBytes(Buffer.concat(sink.cars[0]))
      const cids = new Set<string>()
      for await (const b of reader.blocks()) cids.add(b.cid.toString())
      expect(old.every((c) => cids.has(c))).toBe(true)
      expect(r.blocks).toBe(52)
    } finally {
      t.close()
    }
  })

  test('does not write to blocks.db', async () => {
    const t = await twoProcesses()
    try {
      await t.commit('a', 3)
      const before = t.node.blocks.count()
      const r = await writeBusCar(t.cli.store, t.cli.blocks, memorySink().open)
      expect('root' in r).toBe(true)
      expect(t.node.blocks.count()).toBe(before)
    } finally {
      t.close()
    }
  })

  test('the node truncating its WAL does not wait for a reader that holds a snapshot', async () => {
    const t = await twoProcesses()
    try {
      await t.commit('a', 3)
      const snapshot = t.cli.blocks.readSnapshot()
      await t.commit('b', 3)
      // With the busy timeout (5 s) the checkpoint would wait for the reader here; a test timeout of 2 s fails it.
      t.node.blocks.truncateWal()
      snapshot.end()
    } finally {
      t.close()
    }
  }, 2_000)
})

describe('readTrees', () => {
  test('runs again on the new roots when a block is missing and the roots moved, at most `attempts` times', async () => {
    const t = await twoProcesses()
    try {
      const seen: string[] = []
      let roots = ['r1']
      const missing = (r: string[]) => {
        seen.push(r[0])
        return r[0] === 'r3' ? 'whole' : 'missing'
      }
      const read = () => {
        const now = [...roots]
        roots = [`r${Number(roots[0].slice(1)) + 1}`]
        return now
      }
      expect(await readTrees(t.cli.blocks, read, missing, (x) => x === 'whole')).toBe('whole')
      expect(seen).toEqual(['r1', 'r2', 'r3'])

      // Roots that keep moving: three runs, then the last answer.
      seen.length = 0
      roots = ['r10']
      expect(await readTrees(t.cli.blocks, read, missing, (x) => x === 'whole')).toBe('missing')
      expect(seen).toEqual(['r10', 'r11', 'r12'])
    } finally {
      t.close()
    }
  })

  test('with roots that did not move, a missing block is damage: one run', async () => {
    const t = await twoProcesses()
    try {
      let runs = 0
      const r = await readTrees(
        t.cli.blocks,
        () => ['same'],
        () => ++runs,
        () => false
      )
      expect({ r, runs }).toEqual({ r: 1, runs: 1 })
    } finally {
      t.close()
    }
  })
})
