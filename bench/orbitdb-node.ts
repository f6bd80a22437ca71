/**
 * One OrbitDB 4 node for the side-by-side benchmark: the same Helia 7 / libp2p 3 stack as cairn
 * (TCP, the same private-network protector, noise with pure-JS crypto, yamux, identify, gossipsub,
 * bitswap only: no delegated or gateway routing, which stalls without internet).
 *
 *   bun bench/orbitdb-node.ts --dir DIR --swarm-key FILE [--bootstrap MULTIADDR] [--address /orbitdb/...]
 *
 * It serves the same two things the benchmark uses on cairn: `POST /v1/events` on loopback to publish
 * (`db.add`), and one stdout line `{"applied": id}` for every log entry this node has newly joined,
 * written when the entry lands (OrbitDB emits one `update` per joined head, so the node walks back
 * through `next` to find every entry that came with it). The first line is `{"ready": {...}}`.
 */
import { parseArgs } from 'node:util'
import { mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createOrbitDB, IPFSAccessController } from '@orbitdb/core'
import { createHeliaLight } from 'helia'
import { withLibp2pLight } from '@helia/libp2p'
import { withBitswap } from '@helia/bitswap'
import { tcp } from '@libp2p/tcp'
import { noise, pureJsCrypto } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { preSharedKey } from '@libp2p/pnet'
import { gossipsub } from '@libp2p/gossipsub'
import { multiaddr } from '@multiformats/multiaddr'
import * as dagCbor from '@ipld/dag-cbor'
import { FsBlockstore } from 'blockstore-fs'
import { FsDatastore } from 'datastore-fs'

const { values } = parseArgs({ options: { dir: { type: 'string' }, 'swarm-key': { type: 'string' }, bootstrap: { type: 'string', multiple: true }, address: { type: 'string' } } })
const dir =
  values.dir ??
  (() => {
    throw new Error('--dir is required')
  })()
mkdirSync(join(dir, 'blocks'), { recursive: true })
mkdirSync(join(dir, 'data'), { recursive: true })

const datastore = new FsDatastore(join(dir, 'data'))
const base = createHeliaLight({ blockstore: new FsBlockstore(join(dir, 'blocks')), datastore, codecs: [dagCbor] })
const withP2p = withLibp2pLight(base, {
  datastore,
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise({ crypto: pureJsCrypto })],
  streamMuxers: [yamux()],
  connectionProtector: preSharedKey({
    psk: readFileSync(
      values['swarm-key'] ??
        (() => {
          throw new Error('--swarm-key is required')
        })()
    )
  }),
  services: { identify: identify(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, emitSelf: false }) }
})
const ipfs: any = withBitswap(withP2p as any, { sendWantlistDebounce: 1 })
await ipfs.start()
for (const addr of values.bootstrap ?? []) await ipfs.libp2p.dial(multiaddr(addr))

const orbitdb = await createOrbitDB({ ipfs, id: 'bench', directory: join(dir, 'orbitdb') })
const db = await orbitdb.open(values.address ?? 'cairn-bench', { type: 'events', AccessController: IPFSAccessController({ write: ['*'] }) })

const out = (line: unknown): void => {
  process.stdout.write(`${JSON.stringify(line)}\n`)
}
const seen = new Set<string>()
for await (const e of db.log.iterator()) seen.add(e.hash)

// Entries join one head at a time: walk back from each new head to every entry not seen before.
async function joined(head: { hash: string }): Promise<void> {
  const stack: string[] = [head.hash]
  while (stack.length > 0) {
    const hash = stack.pop()!
    if (seen.has(hash)) continue
    const entry = await db.log.get(hash)
    if (entry == null) continue
    seen.add(hash)
    out({ applied: entry.payload.value.id })
    stack.push(...entry.next, ...(entry.refs ?? []))
  }
}
let chain = Promise.resolve()
db.events.on('update', (entry: { hash: string }) => {
  chain = chain
    .then(async () => {
      await joined(entry)
    })
    .catch((err) => {
      console.error(err)
    })
})

const server = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  async fetch(req) {
    const url = new URL(req.url)
    if (req.method === 'POST' && url.pathname === '/v1/events') {
      const body = (await req.json()) as { payload: { id: string } }
      const hash = await db.add(body.payload)
      return Response.json({ event_id: body.payload.id, cid: hash })
    }
    if (url.pathname === '/count') return Response.json({ count: seen.size })
    return new Response('not found', { status: 404 })
  }
})

out({ ready: { peer_id: ipfs.libp2p.peerId.toString(), addrs: ipfs.libp2p.getMultiaddrs().map(String), http: `127.0.0.1:${server.port}`, address: db.address } })

const stop = async (): Promise<void> => {
  await server.stop(true)
  await db.close()
  await orbitdb.stop()
  await ipfs.stop()
  process.exit(0)
}
process.on('SIGTERM', () => {
  void stop()
})
process.on('SIGINT', () => {
  void stop()
})
