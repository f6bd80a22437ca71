import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import * as raw from 'multiformats/codecs/raw'
import type { PrivateKey } from '@libp2p/interface'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { signHead } from '../../src/model/head.ts'
import type { CairnNode } from '../../src/node/node.ts'
import { join } from 'node:path'
import { initDataDir } from '../../src/datadir/init.ts'
import { loadIdentity } from '../../src/datadir/load.ts'

/** A block of `size` random bytes, with its raw CID. */
export async function randomBlock(size: number): Promise<{ cid: CID; bytes: Uint8Array }> {
  const bytes = new Uint8Array(size)
  for (let i = 0; i < size; i += 65_536) crypto.getRandomValues(bytes.subarray(i, Math.min(size, i + 65_536)))
  return { cid: CID.create(1, raw.code, await sha256.digest(bytes)), bytes }
}

const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'

/** A string in the shape of a peer id (acks only need the shape), distinct per `i`. */
export function fakePeerId(i: number): string {
  let tail = ''
  let n = i
  for (let k = 0; k < 44; k++) {
    tail += BASE58[n % 58]
    n = Math.floor(n / 58)
  }
  return `12D3KooW${tail}`
}

/** A producer of its own: a fresh identity that signs heads (a member that anyone with the swarm key can mint). */
export async function mintProducer(): Promise<{ key: PrivateKey; id: string }> {
  const key = await generateKeyPair('Ed25519')
  return { key, id: peerIdFromPrivateKey(key).toString() }
}

/** @returns a head of `producer` signed with its key, pointing at a root nobody holds */
export async function forgedHead(p: { key: PrivateKey; id: string }, seq: number, acks: Record<string, number> = {}): Promise<Uint8Array> {
  const root = (await randomBlock(32)).cid.toString()
  return await signHead({ producer: p.id, seq, root, hlc: `${Date.now()}-0000`, acks }, p.key)
}

/** Puts signed heads where a node's head exchange pushes them from (as if it had received them). */
export function plantHeads(node: CairnNode, heads: Array<{ producer: string; bytes: Uint8Array }>): void {
  for (const h of heads) {
    node.store.db.run('INSERT INTO producers (producer, head_message) VALUES (?, ?) ON CONFLICT (producer) DO UPDATE SET head_message = excluded.head_message', [h.producer, h.bytes])
  }
}

/** Stores blocks, by CID text, in a node's blocks.db in one transaction (as if it had fetched them). */
export function plantBlocks(node: CairnNode, blocks: Iterable<[string, Uint8Array]>): void {
  node.blocks.db.transaction(() => {
    for (const [cid, bytes] of blocks) node.blocks.putSync(CID.parse(cid), bytes)
  })
}

/** @returns the bytes of every block in a node's blocks.db */
export function storedBytes(node: CairnNode): number {
  return node.blocks.db.get<{ n: number }>('SELECT coalesce(sum(length(bytes)), 0) AS n FROM blocks')?.n ?? 0
}

/** Inits one data directory per name under `parent`: the first founds a network, the others join it with the first as their owner. */
export async function network(parent: string, names: string[]): Promise<{ dirs: string[]; ids: string[] }> {
  const dirs = names.map((x) => join(parent, x))
  await initDataDir(dirs[0], { newNetwork: true })
  const founder = (await loadIdentity(dirs[0])).peerId.toString()
  for (const dir of dirs.slice(1)) await initDataDir(dir, { swarmKeyFile: join(dirs[0], 'swarm.key'), owners: [founder] })
  return { dirs, ids: await Promise.all(dirs.map(async (dir) => (await loadIdentity(dir)).peerId.toString())) }
}
