import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { initDataDir } from '../../src/datadir/init.ts'
import { tempDir, waitFor } from './process.ts'
import { CairnNode } from '../../src/node/node.ts'
import { RUN_SETTINGS, toNodeConfig } from '../../src/config/catalog.ts'
import { BUILTIN_PLUGINS } from '../../plugins/mod.ts'
import { resolveSettings } from '../../src/config/resolve.ts'
import { loadIdentity } from '../../src/datadir/load.ts'
import { signHead } from '../../src/model/head.ts'
import { canonicalJson } from '../../src/model/canonical.ts'
import { directoryBlock, fileBlock } from '../../src/unixfs/tree.ts'
import { shardedDirectory } from '../../src/unixfs/hamt.ts'
import { type Log, silentLog } from '../../src/log/logger.ts'
import type { PublishResult } from '../../src/model/publishRequest.ts'

/** @returns the first address a node listens on, for another node's bootstrap list */
export const addr = (n: CairnNode): string => n.ipfs.libp2p.getMultiaddrs()[0].toString()

/** @returns a node of this process on `dir`, not started, with loopback defaults (and no log, unless `log` is given) */
export function newInProcessNode(dir: string, flags: Record<string, unknown> = {}, log: Log = silentLog): CairnNode {
  const config = toNodeConfig(
    resolveSettings(RUN_SETTINGS, { data: dir, listen: ['/ip4/127.0.0.1/tcp/0'], http: '127.0.0.1:0', 'announce-interval': '1h', 'allow-unknown-types': true, ...flags }, {}, {})
  )
  return new CairnNode(config, { log, plugins: BUILTIN_PLUGINS })
}

/** Starts a node in this process (a member gone bad, for tests), with loopback defaults. */
export async function inProcessNode(dir: string, flags: Record<string, unknown> = {}, log?: Log): Promise<CairnNode> {
  const node = newInProcessNode(dir, flags, log)
  await node.start()
  return node
}

/**
 * Runs `fn` against a fresh in-process node of its own network, with the base URL and token of its
 * loopback API, and stops it and removes its directory after.
 */
export async function withApiNode(flags: Record<string, unknown>, fn: (node: CairnNode, base: string, token: string, dir: string) => Promise<void>): Promise<void> {
  using tmp = tempDir()
  const dir = join(tmp.path, 'n')
  await initDataDir(dir, { newNetwork: true })
  const node = await inProcessNode(dir, flags)
  try {
    await fn(node, `http://127.0.0.1:${node.http!.port}`, readFileSync(join(dir, 'api.token'), 'utf8').trim(), dir)
  } finally {
    await node.stop()
  }
}

/** One file of a forged outbox: its name in the hour bucket and its bytes (anything at all). */
export interface ForgedFile {
  name: string
  content: unknown
}

/**
 * Replaces a node's outbox, as its peers see it, with a tree of the given files, signed by the node's own
 * key (so the head verifies: the node is a member writing lies into its own subtree), and pushes the head.
 */
export async function publishForgedTree(node: CairnNode, seq: number, files: ForgedFile[], hlcMs = Date.now()): Promise<Uint8Array> {
  const { privateKey, peerId } = await loadIdentity(node.config.data)
  const entries = []
  for (const f of files) {
    const bytes = f.content instanceof Uint8Array ? f.content : new TextEncoder().encode(typeof f.content === 'string' ? f.content : canonicalJson(f.content))
    const block = await fileBlock(bytes)
    node.blocks.putSync(block.cid, block.bytes)
    entries.push({ name: f.name, cid: block.cid, size: bytes.length })
  }
  const now = new Date(hlcMs).toISOString()
  const bucket = await shardedDirectory(entries)
  for (const b of bucket.blocks) node.blocks.putSync(b.cid, b.bytes)
  const day = await directoryBlock([{ name: now.slice(11, 13), cid: bucket.root.cid, size: bucket.root.size }])
  node.blocks.putSync(day.cid, day.bytes)
  const root = await directoryBlock([{ name: now.slice(0, 10), cid: day.cid, size: day.size }])
  node.blocks.putSync(root.cid, root.bytes)
  const head = await signHead({ producer: peerId.toString(), seq, root: root.cid.toString(), hlc: `${hlcMs}-ffff`, acks: {} }, privateKey)
  node.store.db.run('INSERT INTO producers (producer, head_message) VALUES (?, ?) ON CONFLICT (producer) DO UPDATE SET head_message = excluded.head_message', [peerId.toString(), head])
  await node.announceAll()
  return head
}

/**
 * Publishes from `node` `rounds` trees of `perBucket` names that are no event file's (`junk-<k>-<i>.txt`,
 * each a new path), round k (from 0) as seq `firstSeq + k` in the hour bucket of `hourOf(k)` (a new one
 * each round, so a walk lists only that bucket), each once `counted()` says the receiving side has counted
 * (k + 1) × perBucket refusals.
 */
export async function publishRefusedRounds(
  node: CairnNode,
  options: { rounds: number; perBucket: number; firstSeq: number; hourOf: (k: number) => number; counted: () => Promise<number> }
): Promise<void> {
  const { rounds, perBucket, firstSeq, hourOf, counted } = options
  for (let k = 0; k < rounds; k++) {
    const files = Array.from({ length: perBucket }, (_, i) => ({ name: `junk-${k}-${String(i).padStart(5, '0')}.txt`, content: `junk ${k} ${i}` }))
    await publishForgedTree(node, firstSeq + k, files, hourOf(k))
    await waitFor(`round ${k + 1}'s refusals counted`, async () => (await counted()) >= (k + 1) * perBucket, 60_000)
  }
}

/**
 * Publishes on `node` as a removed member that writes on regardless would (a release from before a node
 * refused its publishes once it holds its own removal, or a member gone bad): the node's own removal is
 * hidden from its publish check for this call, so that tests can show what the others do with such events.
 */
export async function publishThoughRemoved(node: CairnNode, body: unknown): Promise<PublishResult> {
  const members = node.members
  const self = node.peerId.toString()
  const removedAt = members.removedAt
  members.removedAt = (producer) => (producer === self ? undefined : removedAt.call(members, producer))
  try {
    return await node.publish(body)
  } finally {
    members.removedAt = removedAt
  }
}
