/**
 * What reading a bucket's HAMT shards costs a receiver's listing: every shard of a bucket of N files
 * (as cairn writes them), read by the full dag-pb + UnixFS decode and by the reader of cairn's own layout
 * that `readDirectoryNode` tries first, each followed by the placement check (`misplacedIn`) a walk makes,
 * in µs per shard (the fastest of ROUNDS passes over all shards).
 *
 *   bun bench/hamt-read.ts 10000
 */
import { uuidv7 } from 'uuidv7'
import { fileName } from '../src/model/layout.ts'
import { decodeDirectoryNode, misplacedIn, readDirectoryNode, shardedDirectory, type DirectoryNode } from '../src/unixfs/hamt.ts'
import { fileBlockSync } from '../src/unixfs/tree.ts'

const N = Number(process.argv[2] ?? 10_000)
const ROUNDS = Number(process.env.ROUNDS ?? 7)

const entries = Array.from({ length: N }, (_, i) => ({ name: fileName(i + 1, uuidv7()), cid: fileBlockSync(new TextEncoder().encode(`{"x":${i}}`)).cid, size: 300 }))
const dir = await shardedDirectory(entries)
// Each shard with the slots of its path from the bucket's root, as a walk passes them to misplacedIn.
const shards: Array<{ bytes: Uint8Array; slots: number[] }> = []
const byCid = new Map([dir.root, ...dir.blocks].map((b) => [b.cid.toString(), b.bytes]))
const visit = (bytes: Uint8Array, slots: number[]): void => {
  shards.push({ bytes, slots })
  for (const s of decodeDirectoryNode(bytes).shards) visit(byCid.get(s.cid.toString())!, [...slots, parseInt(s.label, 16)])
}
visit(dir.root.bytes, [])

/** @returns the fastest pass's µs per shard of reading (and checking) every shard with `read` */
function time(read: (bytes: Uint8Array) => DirectoryNode, check: boolean): number {
  let best = Number.POSITIVE_INFINITY
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = performance.now()
    for (const s of shards) {
      const node = read(s.bytes)
      if (check && misplacedIn(node, s.slots) != null) throw new Error('an honest shard is misplaced')
    }
    best = Math.min(best, performance.now() - t0)
  }
  return (best * 1000) / shards.length
}

console.log(`bucket of ${N} files: ${shards.length} shards`)
for (const check of [false, true]) {
  const generic = time(decodeDirectoryNode, check)
  const own = time(readDirectoryNode, check)
  console.log(`${check ? 'read + misplacedIn' : 'read'}: generic ${generic.toFixed(2)} µs per shard, cairn's layout ${own.toFixed(2)} µs (${(own / generic).toFixed(2)}×)`)
}
