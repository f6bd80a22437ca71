/**
 * What the deep HAMT shards an hour bucket keeps between commits hold in memory: a bucket of N files is
 * built, reopened at its root with a budget of KEEP shards, every shard touched once in commits of 400,
 * and the heap measured after a full collection (run it with KEEP=0 for the baseline to subtract).
 *
 *   bun bench/hamt-memory.ts 20000 2048
 */
import { heapStats } from 'bun:jsc'
import { uuidv7 } from 'uuidv7'
import { fileName } from '../src/model/layout.ts'
import { ShardedDirectory } from '../src/unixfs/hamt.ts'
import { type Block, fileBlockSync } from '../src/unixfs/tree.ts'

/** the CID class of the project's multiformats (bench/node_modules holds OrbitDB's own copy) */
type CID = Block['cid']

const N = Number(process.argv[2] ?? 20_000)
const KEEP = Number(process.argv[3] ?? 2048)
const store = new Map<string, Uint8Array>()
// A copy per read, as the block store gives.
const read = (cid: CID): Uint8Array | undefined => store.get(cid.toString())?.slice()

async function build(): Promise<{ cid: CID; size: number }> {
  const entries = Array.from({ length: N }, (_, i) => ({ name: fileName(i + 1, uuidv7()), cid: fileBlockSync(new TextEncoder().encode(`{"x":${i}}`)).cid, size: 300 }))
  const dir = new ShardedDirectory({ read, keep: 0 })
  for (let i = 0; i < N; i += 400) {
    dir.add(entries.slice(i, i + 400))
    for (const b of (await dir.flush()).blocks) store.set(b.cid.toString(), b.bytes)
  }
  const { root } = await dir.flush()
  return { cid: root.cid, size: root.size }
}

const root = await build()
const absent = Array.from({ length: N }, (_, i) => `${fileName(i + 1, uuidv7())}x`)
const heap = (): number => {
  Bun.gc(true)
  const s = heapStats()
  return s.heapSize + s.extraMemorySize
}
const before = heap()
const dir = new ShardedDirectory({ root, count: N, read, keep: KEEP })
// Removing names it does not hold reads the shards on their paths and changes nothing.
for (let i = 0; i < N; i += 400) {
  dir.remove(absent.slice(i, i + 400))
  await dir.flush()
}
const held = heap() - before
console.log(`${N} files, budget ${KEEP}: ${dir.deepShards} deep shards (${dir.deepShardBytes} bytes encoded) decoded, heap +${Math.round(held / 1024)} KiB`)
