import { describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createHeliaLight } from 'helia'
import { withLibp2pLight, type HeliaWithLibp2p } from '@helia/libp2p'
import { withBitswap } from '@helia/bitswap'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify, type Identify } from '@libp2p/identify'
import { preSharedKey } from '@libp2p/pnet'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import { exporter, recursive } from 'ipfs-unixfs-exporter'
import { invite, NodeProcess, publishMany, tempDir, waitFor } from './helpers/process.ts'
import { query } from './helpers/db.ts'
import { openDatabase } from '../src/runtime/sqlite.ts'
import { SqliteBlockstore } from '../src/store/blockstore.ts'
import { walkDag } from '../src/unixfs/walk.ts'

/** A plain Helia node in the network's swarm (TCP, the swarm key, noise, yamux, bitswap), built from the libraries alone. */
async function plainHelia(swarmKeyFile: string): Promise<HeliaWithLibp2p<{ identify: Identify }>> {
  const helia = withBitswap(
    withLibp2pLight(createHeliaLight(), {
      addresses: { listen: [] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionProtector: preSharedKey({ psk: readFileSync(swarmKeyFile) }),
      services: { identify: identify() }
    })
  )
  await helia.start()
  return helia
}

/** @returns every event file under a bus root, read through `helia`: path -> parsed JSON */
async function readBus(helia: HeliaWithLibp2p<{ identify: Identify }>, root: CID, signal: AbortSignal): Promise<Map<string, { event_id: string; producer: string }>> {
  const files = new Map<string, { event_id: string; producer: string }>()
  for await (const entry of recursive(root, helia.blockstore, { signal })) {
    const node = await exporter(entry.cid, helia.blockstore, { signal })
    if (node.type !== 'file' && node.type !== 'raw') continue
    const chunks: Uint8Array[] = []
    for await (const c of node.content({ signal })) chunks.push(c)
    files.set(entry.path.split('/').slice(1).join('/'), JSON.parse(Buffer.concat(chunks).toString('utf8')))
  }
  return files
}

/** @returns the blocks under `root` that the node's blocks.db lacks (it may be running: WAL lets both in) */
async function missingOnDisk(dir: string, root: CID): Promise<string[]> {
  const blocks = new SqliteBlockstore(await openDatabase(join(dir, 'blocks.db'), { readonly: true }))
  try {
    return [...walkDag([root], (cid) => blocks.getSync(cid))].filter((s) => s.kind === 'missing').map((s) => s.cid.toString())
  } finally {
    blocks.db.close()
  }
}

/**
 * Reads the bus through `helia`; when that fails, the error says which of the two sides is at fault: the
 * blocks the node's store lacks, and what the plain node knows of its connection to the node.
 */
async function readBusOrExplain(helia: HeliaWithLibp2p<{ identify: Identify }>, node: NodeProcess, root: CID): ReturnType<typeof readBus> {
  try {
    return await readBus(helia, root, AbortSignal.timeout(20_000))
  } catch (err) {
    const conns = helia.libp2p.getConnections().map((c) => `${c.remotePeer.toString()} ${c.status} streams=${c.streams.map((s) => s.protocol).join(',')}`)
    const protocols = await helia.libp2p.peerStore.get(helia.libp2p.getConnections()[0]?.remotePeer ?? helia.libp2p.peerId).then(
      (p) => p.protocols.join(','),
      () => 'no peer record'
    )
    throw new Error(
      `reading bus root ${root} from ${node.peerId} failed (${(err as Error).message}); blocks missing on its disk: [${(await missingOnDisk(node.dir, root)).join(' ')}]; plain node's connections: [${conns.join('; ')}]; protocols it knows of the peer: ${protocols}`
    )
  }
}

describe('the bus root a node reports', () => {
  test('a plain Helia node lists it and reads every event file under it, and again once it changed', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    await a.start()
    await b.start(['--bootstrap', a.addrs[0]])
    await publishMany(a, 30, invite)
    await publishMany(b, 5, (i) => invite(100 + i))
    await waitFor('b synced a', () => query<{ n: number }>(b.dir, 'SELECT count(*) AS n FROM events')[0].n === 35, 60_000)
    const helia = await plainHelia(join(a.dir, 'swarm.key'))
    try {
      await helia.libp2p.dial(multiaddr(b.addrs[0]))
      const check = async (): Promise<void> => {
        const status = await b.status()
        const files = await readBusOrExplain(helia, b, CID.parse(status.bus_root))
        const rows = query<{ producer: string; event_id: string; seq: number }>(b.dir, 'SELECT producer, event_id, seq FROM events ORDER BY producer, seq')
        expect([...new Set([...files.keys()].map((p) => p.split('/')[0]))].sort()).toEqual([a.peerId, b.peerId].sort())
        expect(
          [...files]
            .map(([path, e]) => ({ producer: e.producer, event_id: e.event_id, under: path.startsWith(`${e.producer}/`) }))
            .sort((x, y) => x.producer.localeCompare(y.producer) || x.event_id.localeCompare(y.event_id))
        ).toEqual(rows.map((r) => ({ producer: r.producer, event_id: r.event_id, under: true })).sort((x, y) => x.producer.localeCompare(y.producer) || x.event_id.localeCompare(y.event_id)))
      }
      await check()
      // The bus root moves with every commit; the one status reports next is served too.
      await publishMany(b, 3, (i) => invite(200 + i))
      await check()
    } finally {
      await helia.stop()
    }
  }, 120_000)
})
