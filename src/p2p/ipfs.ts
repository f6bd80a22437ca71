import { createHeliaLight } from 'helia'
import { withLibp2pLight, type HeliaWithLibp2p } from '@helia/libp2p'
import { withBitswap } from '@helia/bitswap'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { preSharedKey } from '@libp2p/pnet'
import { gossipsub } from '@libp2p/gossipsub'
import { createPeerScoreParams, createTopicScoreParams } from '@libp2p/gossipsub/score'
import { pubsubPeerDiscovery } from '@libp2p/pubsub-peer-discovery'
import type { PrivateKey, Transport } from '@libp2p/interface'
import type { Blockstore } from 'interface-blockstore'
import { FsDatastore } from 'datastore-fs'
import { AddressInUseError, ListenError } from '../errors.ts'
import { noiseOptions } from '../runtime/noiseCrypto.ts'
import { boundPnetCipherMemory } from './pnetCipher.ts'
import { PeerRecordCache } from './peerRecords.ts'
import { lazyYamuxWindowUpdates } from './yamuxWindow.ts'

/** How long a changed peer record may wait in memory (PeerRecordCache). */
const PEER_RECORDS_FLUSH_MS = 30_000
/** Peer records kept in memory: more than the connections libp2p allows (maxConnections below). */
const PEER_RECORDS_MAX = 1024
import { MAX_HEAD_BYTES } from '../model/head.ts'
import { gossipCounts, type GossipReceived } from './gossipCounts.ts'
import { BoundedMessageCache, messageIdToString } from './messageCache.ts'

/**
 * A gossipsub frame holds a few head messages: gossipsub answers an IWANT with every message asked for in
 * one frame. Each message is still held to MAX_HEAD_BYTES by the heads topic's validator.
 */
const GOSSIP_FRAME_BYTES = 4 * MAX_HEAD_BYTES

type GossipSub = ReturnType<ReturnType<typeof gossipsub>>
/** the type gossipsub's `messageCache` option names (its class is not exported; BoundedMessageCache has its members) */
type GossipsubMessageCache = NonNullable<Parameters<typeof gossipsub>[0]>['messageCache']

/** The libp2p services cairn runs. */
export interface CairnServices extends Record<string, unknown> {
  identify: ReturnType<ReturnType<typeof identify>>
  pubsub: GossipSub
}

/** A Helia node with cairn's libp2p. */
export type CairnIpfs = HeliaWithLibp2p<CairnServices>

export interface IpfsInit {
  privateKey: PrivateKey
  swarmKey: Uint8Array
  listen: string[]
  blockstore: Blockstore
  datastorePath: string
  /** names the peer discovery topic */
  network: string
  /** the heads topic: invalid hints on it are penalised in peer scoring */
  headsTopic: string
  /** told of a peer record the datastore could not write (it is tried again) */
  onDatastoreError: (err: Error) => void
  /** told of every gossip message received, by topic ('hints' or 'peers'), and of every duplicate */
  onGossipReceived?: GossipReceived
  /** gossipsub's message cache (one bounded by bytes by default) */
  messageCache?: BoundedMessageCache
  /** told of each listen address the TCP transport could not listen on, with the system's error (see listenError) */
  onListenFailure?: (addr: string, err: Error) => void
}

/** gossipsub's defaults: messages are kept for 5 heartbeats, IHAVE gossip names those of the last 3 */
const MCACHE_LENGTH = 5
const MCACHE_GOSSIP = 3

/** @returns a message cache for createIpfs, bounded by GOSSIP_CACHE_BYTES */
export function gossipMessageCache(): BoundedMessageCache {
  return new BoundedMessageCache(MCACHE_GOSSIP, MCACHE_LENGTH, messageIdToString)
}

/**
 * Builds (does not start) the embedded IPFS node: Helia light with bitswap, over libp2p with TCP,
 * the swarm-key protector, noise, yamux, identify, gossipsub and pubsub peer discovery.
 * No public bootstrap list, no delegated routing, no UPnP: nothing reaches out beyond the given peers.
 */
export async function createIpfs(init: IpfsInit): Promise<CairnIpfs> {
  boundPnetCipherMemory()
  lazyYamuxWindowUpdates()
  const datastore = new PeerRecordCache(new FsDatastore(init.datastorePath), {
    flushMs: PEER_RECORDS_FLUSH_MS,
    maxEntries: PEER_RECORDS_MAX,
    onError: (err) => {
      init.onDatastoreError(err)
    }
  })
  const peersTopic = `cairn/${init.network}/peers`
  const helia = createHeliaLight({ blockstore: init.blockstore, datastore })
  const withP2p = withLibp2pLight(helia, {
    privateKey: init.privateKey,
    datastore,
    addresses: { listen: init.listen },
    transports: [reportListenFailures(tcp(), init.onListenFailure)],
    connectionEncrypters: [noise(await noiseOptions())],
    streamMuxers: [yamux()],
    connectionProtector: preSharedKey({ psk: init.swarmKey }),
    connectionManager: { maxConnections: 300 },
    peerDiscovery: [pubsubPeerDiscovery({ interval: 10_000, topics: [peersTopic], listenOnly: false })],
    services: {
      identify: identify(),
      pubsub: gossipsub({
        allowPublishToZeroTopicPeers: true,
        // Every hint is a head its producer signed (checked by the topic validator): a gossipsub
        // signature on top cost the publisher a signing and every receiver a check per hop. Unsigned
        // messages are identified by the hash of their bytes, so a repeated hint is a duplicate.
        globalSignaturePolicy: 'StrictNoSign',
        emitSelf: false,
        fallbackToFloodsub: false,
        maxInboundDataLength: GOSSIP_FRAME_BYTES,
        // Peer discovery re-publishes the same peer record on a timer and does not catch the rejection
        // gossipsub throws for a message it has seen (PublishError.Duplicate): such a publish is a no-op.
        ignoreDuplicatePublishError: true,
        // No IDONTWANT (gossipsub v1.2): it goes to every mesh peer before the hint is validated, and
        // at a hint's size (a few KiB) the peers forward their copies before it arrives. Measured: copies
        // per hint unchanged (4.3-4.6 in the ten-node mesh), farthest node p50 10x lower without it.
        idontwantMinDataSize: Number.MAX_SAFE_INTEGER,
        // gossipsub keeps every message for mcacheLength heartbeats whatever its size; this cache also holds
        // them to GOSSIP_CACHE_BYTES. Both must turn message ids into the same strings.
        mcacheLength: MCACHE_LENGTH,
        mcacheGossip: MCACHE_GOSSIP,
        msgIdToStrFn: messageIdToString,
        messageCache: (init.messageCache ?? gossipMessageCache()) as unknown as GossipsubMessageCache,
        ...(init.onGossipReceived != null && {
          metricsRegister: gossipCounts(init.onGossipReceived),
          metricsTopicStrToLabel: new Map([
            [init.headsTopic, 'hints'],
            [peersTopic, 'peers']
          ])
        }),
        scoreParams: createPeerScoreParams({
          topics: {
            // Only invalid hints count against a peer. The mesh-delivery penalties (on by default) punish a
            // peer that is not the first to deliver 20 messages per window: with several producers, or a
            // quiet network, honest relays got graylisted and heads waited for the 5 s re-announce.
            [init.headsTopic]: createTopicScoreParams({
              topicWeight: 1,
              invalidMessageDeliveriesWeight: -100,
              invalidMessageDeliveriesDecay: 0.5,
              meshMessageDeliveriesWeight: 0,
              meshFailurePenaltyWeight: 0
            })
          }
        })
      })
    }
  })
  // Wants go out at once: a sync waits on each directory level in turn.
  return withBitswap(withP2p as unknown as HeliaWithLibp2p, { sendWantlistDebounce: 1 }) as unknown as CairnIpfs
}

/**
 * Wraps a transport so that each address its listeners fail to listen on is reported with the system's error:
 * libp2p's own refusal to start (UnsupportedListenAddressesError) names them only inside its message text.
 */
function reportListenFailures<C>(factory: (components: C) => Transport, onFailure?: (addr: string, err: Error) => void): (components: C) => Transport {
  if (onFailure == null) return factory
  return (components) => {
    const transport = factory(components)
    const createListener = transport.createListener.bind(transport)
    transport.createListener = (options) => {
      const listener = createListener(options)
      const listen = listener.listen.bind(listener)
      listener.listen = async (addr) => {
        try {
          await listen(addr)
        } catch (err) {
          onFailure(addr.toString(), err as Error)
          throw err
        }
      }
      return listener
    }
    return transport
  }
}

/**
 * Turns libp2p's refusal to start because a listen address failed into one line naming the address and the
 * system's reason; any other error is returned as it is.
 *
 * @param failures the failures createIpfs's onListenFailure reported, by address
 * @returns AddressInUseError for an address another process listens on, ListenError for any other failure
 */
export function listenError(err: unknown, listen: readonly string[], failures: ReadonlyMap<string, Error>): unknown {
  if ((err as Error | undefined)?.name !== 'UnsupportedListenAddressesError') return err
  const [failed] = failures
  if (failed == null) {
    // No transport took the address: only TCP addresses are listened on.
    return new ListenError(`Cannot listen on --listen ${listen.join(', ')}: cairn listens on TCP addresses only, such as /ip4/0.0.0.0/tcp/4001; fix --listen`)
  }
  const [addr, cause] = failed
  if ((cause as { code?: string }).code === 'EADDRINUSE') {
    return new AddressInUseError(`Cannot listen on ${addr}: the address is already in use (another process listens on it); pick another --listen port, or /tcp/0 for any free one`)
  }
  return new ListenError(`Cannot listen on ${addr}: ${cause.message}; fix --listen (an address of this host, a port this user may open)`)
}
