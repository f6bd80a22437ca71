import { describe, expect, test } from 'bun:test'
import { collectGarbage, type Exclusive, VACUUM_KEEP_FREE } from '../../src/housekeeping/gc.ts'
import { GC_MAX_REST_MS } from '../../src/housekeeping/stretches.ts'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { openBlockDatabase, SqliteBlockstore } from '../../src/store/blockstore.ts'
import { migrate } from '../../src/store/migrations.ts'
import { Store } from '../../src/store/store.ts'
import { type Block, directoryBlock, fileBlockSync } from '../../src/unixfs/tree.ts'
import { waitFor as waitForEvent } from '../../src/node/events.ts'
import { waitFor } from '../helpers/process.ts'
import { eventFile, forger, headOf, honestTree, victim } from '../adversary/walkForge.ts'

const now = (): Exclusive => async (fn) => fn()

/** A store whose only root is producer `p`'s head root, and a block store. */
async function setup() {
  const db = await openDatabase(':memory:')
  migrate(db)
  const blocks = new SqliteBlockstore(await openBlockDatabase(':memory:'))
  const store = new Store(db)
  let seq = 0
  const point = (root: string): void => {
    seq++
    store.producers.putHead({ producer: 'p', seq, root, hlc: `${seq}`, acks: {}, signed: new Uint8Array([seq]), receivedAt: Date.now() })
  }
  return { blocks, store, point }
}

/** Stores a directory of `n` files named after `tag` (or only builds it), @returns its blocks, the root first */
async function tree(blocks: SqliteBlockstore, tag: string, n: number, store = true): Promise<Block[]> {
  const files = Array.from({ length: n }, (_, i) => fileBlockSync(new TextEncoder().encode(`${tag}-${i}`)))
  const dir = await directoryBlock(files.map((f, i) => ({ name: `${tag}${i}`, cid: f.cid, size: f.bytes.length })))
  const all = [dir, ...files]
  if (store) for (const b of all) blocks.putSync(b.cid, b.bytes)
  return all
}

const present = (blocks: SqliteBlockstore, bs: Block[]): boolean[] => bs.map((b) => blocks.has(b.cid))

/** Calls `fn` once, at the collection's first block read (while it marks). */
function onFirstRead(blocks: SqliteBlockstore, fn: () => void): void {
  const read = blocks.getSync.bind(blocks)
  let done = false
  blocks.getSync = (cid) => {
    if (!done) {
      done = true
      fn()
    }
    return read(cid)
  }
}

describe('garbage collection', () => {
  test('deletes what no root reaches and keeps what one does', async () => {
    const { blocks, store, point } = await setup()
    const a = await tree(blocks, 'a', 3)
    const dead = await tree(blocks, 'x', 3)
    point(a[0].cid.toString())
    const r = await collectGarbage(store, blocks, { exclusive: now() })
    expect(present(blocks, a)).toEqual([true, true, true, true])
    expect(present(blocks, dead)).toEqual([false, false, false, false])
    expect(r.blocks).toBe(4)
    expect(r.bytes).toBe(dead.reduce((n, b) => n + b.bytes.length, 0))
  })

  test('gives the file pages of the dead back beyond a quarter of the file, which later blocks reuse', async () => {
    const { blocks, store, point } = await setup()
    const a = await tree(blocks, 'a', 200)
    await tree(blocks, 'x', 3000)
    point(a[0].cid.toString())
    const full = blocks.pages()
    await collectGarbage(store, blocks, { exclusive: now() })
    expect(blocks.pages()).toBeLessThan(full / 2)
    expect(blocks.freePages()).toBeGreaterThan(0)
    expect(blocks.freePages()).toBeLessThanOrEqual(Math.floor(full * VACUUM_KEEP_FREE))
  })

  test('a root that moves while it marks keeps all it reaches, blocks stored before the run included', async () => {
    const { blocks, store, point } = await setup()
    const a = await tree(blocks, 'a', 3)
    const b = await tree(blocks, 'b', 3)
    const dead = await tree(blocks, 'x', 2)
    point(a[0].cid.toString())
    // The head moves to b (stored before the run, unreached when it started) once marking is under way.
    onFirstRead(blocks, () => point(b[0].cid.toString()))
    const r = await collectGarbage(store, blocks, { exclusive: now(), sliceMs: 0, restRatio: 0 })
    expect(present(blocks, b)).toEqual([true, true, true, true])
    expect(present(blocks, dead)).toEqual([false, false, false])
    // a was marked before the head moved: it goes in the next run
    expect(present(blocks, a)).toEqual([true, true, true, true])
    expect(r.blocks).toBe(3)
    expect((await collectGarbage(store, blocks, { exclusive: now() })).blocks).toBe(4)
  })

  test('a block put while it runs stays, also when it was stored and unreached before', async () => {
    const { blocks, store, point } = await setup()
    const a = await tree(blocks, 'a', 2)
    const again = await tree(blocks, 'y', 2)
    const dead = await tree(blocks, 'x', 2)
    const fresh = await tree(blocks, 'z', 2, false)
    point(a[0].cid.toString())
    // A commit under way writes y's blocks again (they exist: the insert is a no-op) and z's for the first time.
    onFirstRead(blocks, () => {
      for (const blk of [...again, ...fresh]) blocks.putSync(blk.cid, blk.bytes)
    })
    await collectGarbage(store, blocks, { exclusive: now(), sliceMs: 0, restRatio: 0 })
    expect(present(blocks, again)).toEqual([true, true, true])
    expect(present(blocks, fresh)).toEqual([true, true, true])
    expect(present(blocks, dead)).toEqual([false, false, false])
  })

  test('a directory missing when marked that arrives while it runs keeps the stored blocks it links', async () => {
    const { blocks, store, point } = await setup()
    const a = await tree(blocks, 'a', 2)
    // b's files are stored (from an older tree, unreached) but its directory is not: the head points at it
    // while a sync fetches it. It arrives mid-run; the sync reads the files it already has and puts none.
    const b = await tree(blocks, 'b', 2, false)
    for (const f of b.slice(1)) blocks.putSync(f.cid, f.bytes)
    point(b[0].cid.toString())
    const read = blocks.getSync.bind(blocks)
    let missed = false
    blocks.getSync = (cid) => {
      const bytes = read(cid)
      if (bytes == null && cid.equals(b[0].cid) && !missed) {
        missed = true
        setImmediate(() => {
          blocks.putSync(b[0].cid, b[0].bytes)
        })
      }
      return bytes
    }
    await collectGarbage(store, blocks, { exclusive: now(), sliceMs: 0, restRatio: 0 })
    expect(missed).toBe(true)
    expect(present(blocks, b)).toEqual([true, true, true])
    expect(present(blocks, a)).toEqual([false, false, false])
  })

  test('checks for the arrival of missing directories without a look-up per missing directory per stretch', async () => {
    const { blocks, store, point } = await setup()
    // A member's root that links thousands of directories this node does not hold (a refused tree: the
    // sync fetched only its root), and enough dead blocks for several delete pages.
    const absent = await Promise.all(Array.from({ length: 3000 }, async (_, i) => await directoryBlock([{ name: `f${i}`, cid: fileBlockSync(new TextEncoder().encode(`m-${i}`)).cid, size: 1 }])))
    const root = await directoryBlock(absent.map((d, i) => ({ name: `d${i}`, cid: d.cid, size: d.size })))
    blocks.putSync(root.cid, root.bytes)
    point(root.cid.toString())
    const dead = await tree(blocks, 'x', 5000)
    let lookups = 0
    const has = blocks.has.bind(blocks)
    blocks.has = (cid) => {
      lookups++
      return has(cid)
    }
    const r = await collectGarbage(store, blocks, { exclusive: now(), sliceMs: 0, restRatio: 0 })
    expect(r.blocks).toBe(dead.length)
    expect(blocks.has(root.cid)).toBe(true)
    // One look-up per missing directory per stretch was 3,000 x (2 per delete page + 2): ~42,000 in one run.
    expect(lookups).toBeLessThan(3000)
  })

  test('marks a root that moved far while it listed the candidates in stretches, not inside the exclusive section', async () => {
    const { blocks, store, point } = await setup()
    const a = await tree(blocks, 'a', 1)
    await tree(blocks, 'x', 30_000)
    // A catch-up's tree: 300 directories, stored while the run goes through its candidates.
    const dirs = await Promise.all(Array.from({ length: 300 }, async (_, i) => await tree(blocks, `c${i}-`, 1)))
    const far = await directoryBlock(dirs.map((d, i) => ({ name: `d${i}`, cid: d[0].cid, size: 1 })))
    blocks.putSync(far.cid, far.bytes)
    point(a[0].cid.toString())
    let pauses = 0
    // Well past the listing (16 pages) and marking (a few steps), within the candidates (118 stretches).
    const stopping = (): boolean => {
      if (++pauses === 60) point(far.cid.toString())
      return false
    }
    let reads = 0
    const read = blocks.getSync.bind(blocks)
    blocks.getSync = (cid) => {
      reads++
      return read(cid)
    }
    let inside = 0
    const exclusive: Exclusive = async (fn) => {
      const before = reads
      const r = fn()
      inside = reads - before
      return r
    }
    await collectGarbage(store, blocks, { exclusive, stopping, sliceMs: 0, restRatio: 0 })
    expect(pauses).toBeGreaterThan(60)
    expect(dirs.every((d) => blocks.has(d[0].cid) && blocks.has(d[1].cid))).toBe(true)
    expect(inside).toBeLessThan(10)
  })

  test('keeps what the root of a sync under way reaches, after the head moved past that root', async () => {
    const { blocks, store, point } = await setup()
    // A walk of b began before the run (its blocks were put then); a newer head c (not fetched yet) replaced
    // b as the head, and the walk will record b as synced once done.
    const b = await tree(blocks, 'b', 2)
    const c = await tree(blocks, 'c', 2, false)
    const dead = await tree(blocks, 'x', 2)
    point(c[0].cid.toString())
    const r = await collectGarbage(store, blocks, { exclusive: now(), walking: () => [b[0].cid.toString()] })
    expect(present(blocks, b)).toEqual([true, true, true])
    expect(present(blocks, dead)).toEqual([false, false, false])
    expect(r.blocks).toBe(3)
  })

  test('the sweep marks the roots that moved until its exclusive section began', async () => {
    const { blocks, store, point } = await setup()
    const a = await tree(blocks, 'a', 2)
    const b = await tree(blocks, 'b', 2)
    point(a[0].cid.toString())
    // As a commit that ends just before the section: its blocks were written before the run, its head after marking.
    const exclusive: Exclusive = async (fn) => {
      point(b[0].cid.toString())
      return fn()
    }
    await collectGarbage(store, blocks, { exclusive })
    expect(present(blocks, b)).toEqual([true, true, true])
  })

  test('lets the event loop run while it lists and marks', async () => {
    const { blocks, store, point } = await setup()
    const a = await tree(blocks, 'a', 3000)
    await tree(blocks, 'x', 10)
    point(a[0].cid.toString())
    let done = false
    const run = collectGarbage(store, blocks, { exclusive: now(), sliceMs: 0, restRatio: 0 }).then((r) => {
      done = true
      return r
    })
    await new Promise((resolve) => setImmediate(resolve))
    expect(done).toBe(false)
    expect((await run).blocks).toBe(11)
  })

  test('ends at its next pause once the node stops, deleting nothing it had not yet', async () => {
    const { blocks, store, point } = await setup()
    const a = await tree(blocks, 'a', 3000)
    const dead = await tree(blocks, 'x', 2)
    point(a[0].cid.toString())
    let stopping = false
    let reads = 0
    const read = blocks.getSync.bind(blocks)
    blocks.getSync = (cid) => {
      reads++
      return read(cid)
    }
    const run = collectGarbage(store, blocks, { exclusive: now(), sliceMs: 0, restRatio: 0, stopping: () => stopping })
    await new Promise((resolve) => setImmediate(resolve))
    stopping = true
    expect(await run).toEqual({ blocks: 0, bytes: 0 })
    expect(reads).toBeLessThan(10)
    expect(present(blocks, dead)).toEqual([true, true, true])
  })

  test('rests three times the CPU time of a stretch, not its wall time (a SIGSTOP mid-stretch), and never over GC_MAX_REST_MS', async () => {
    const { blocks, store, point } = await setup()
    const a = await tree(blocks, 'a', 3)
    await tree(blocks, 'x', 2)
    point(a[0].cid.toString())
    const elapsed = async (stall: () => void, cpuMs: () => number): Promise<number> => {
      onFirstRead(blocks, stall)
      const started = performance.now()
      await collectGarbage(store, blocks, { exclusive: now(), sliceMs: 10, cpuMs })
      return performance.now() - started
    }
    // A second of wall time and 2 ms of CPU in one stretch (as a process stopped in the middle of it): a rest
    // by wall time would be 3 s.
    const stopped = new Int32Array(new SharedArrayBuffer(4))
    let cpu = 0
    expect(
      await elapsed(
        () => {
          Atomics.wait(stopped, 0, 0, 1000)
          cpu += 2
        },
        () => cpu
      )
    ).toBeLessThan(2500)
    // 200 ms of CPU in one stretch (however short in wall time): it rests three times that, a quarter of a core.
    await tree(blocks, 'z', 2)
    expect(
      await elapsed(
        () => {
          Atomics.wait(stopped, 0, 0, 15)
          cpu += 200
        },
        () => cpu
      )
    ).toBeGreaterThanOrEqual(600)
    // Ten seconds of CPU in one stretch: a rest of 30 s without the bound.
    await tree(blocks, 'y', 2)
    expect(
      await elapsed(
        () => {
          Atomics.wait(stopped, 0, 0, 15)
          cpu += 10_000
        },
        () => cpu
      )
    ).toBeLessThan(GC_MAX_REST_MS + 2500)
  })

  test('deletes nothing when more blocks were put while it ran than it can record', async () => {
    const { blocks, store, point } = await setup()
    const a = await tree(blocks, 'a', 2)
    const dead = await tree(blocks, 'x', 2)
    point(a[0].cid.toString())
    onFirstRead(blocks, () => {
      void tree(blocks, 'z', 2)
    })
    await expect(collectGarbage(store, blocks, { exclusive: now(), sliceMs: 0, restRatio: 0, maxPuts: 2 })).rejects.toThrow('more than 2 blocks were put')
    expect(present(blocks, dead)).toEqual([true, true, true])
  })
})

describe('the roots of the syncs under way', () => {
  test('are the roots being walked, kept after a newer head replaced them, until the walk ends', async () => {
    const p = await forger()
    const files = [await eventFile(p, 1)]
    const first = await honestTree(p, files)
    files.push(await eventFile(p, 2))
    const second = await honestTree(p, files)
    // The first walk's event file comes once released: the walk is under way until then.
    let release = (): void => {}
    const released = new Promise<void>((resolve) => {
      release = resolve
    })
    let held = false
    const { syncer, store, events } = await victim([p], {
      maxFilesPerWalk: 100,
      before: async (cid) => {
        if (cid.equals(files[0].cid) && !held) {
          held = true
          await released
        }
      }
    })
    await syncer.offerHead(await headOf(p, 1, first))
    await waitFor('the first walk to fetch its event file', () => held)
    expect(syncer.walkingRoots()).toEqual([first.toString()])
    await syncer.offerHead(await headOf(p, 2, second))
    expect(store.producers.get(p.id)?.head_root).toBe(second.toString())
    expect(syncer.walkingRoots()).toEqual([first.toString()])
    const idle = waitForEvent(events, 'sync:idle', { signal: AbortSignal.timeout(60_000), filter: () => store.producers.get(p.id)?.synced_root === second.toString() })
    release()
    await idle
    expect(syncer.walkingRoots()).toEqual([])
    await syncer.stop()
    store.close()
  })
})
