import { describe, expect, test } from 'bun:test'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import { announceWanted, type AnnouncingBroker } from '../../src/p2p/announce.ts'

const cidOf = async (text: string, codec = raw.code): Promise<CID> => CID.createV1(codec, await sha256.digest(new TextEncoder().encode(text)))
const PEER = peerIdFromString('12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA')

/** A bitswap-like broker: records what it was told, wants what the lists say */
function broker(own: CID[], peers: Map<string, CID[]>): AnnouncingBroker & { told: string[] } {
  const told: string[] = []
  return {
    told,
    announce: async (cid) => {
      told.push(cid.toString())
    },
    bitswap: {
      getWantlist: () => own.map((cid) => ({ cid })),
      getPeerWantlist: (p: PeerId) => peers.get(p.toString())?.map((cid) => ({ cid }))
    }
  }
}

describe('announceWanted', () => {
  test('announces nothing when nobody wants anything', async () => {
    const b = broker([], new Map())
    expect(announceWanted([b], [await cidOf('a'), await cidOf('b')], [PEER])).toBe(0)
    expect(b.told).toEqual([])
  })

  test('announces exactly the blocks a connected peer or this node wants, matched by multihash', async () => {
    const [a, bb, c] = [await cidOf('a'), await cidOf('b'), await cidOf('c')]
    // the peer asked for b as dag-pb: the same multihash under another codec is the same block to bitswap
    const b = broker([c], new Map([[PEER.toString(), [CID.createV1(0x70, bb.multihash)]]]))
    expect(announceWanted([b], [a, bb, c], [PEER])).toBe(2)
    expect(b.told).toEqual([bb.toString(), c.toString()])
  })

  test('a peer that is not connected any more does not count', async () => {
    const a = await cidOf('a')
    const b = broker([], new Map([[PEER.toString(), [a]]]))
    expect(announceWanted([b], [a], [])).toBe(0)
  })

  test('a broker whose want lists cannot be read hears of every block', async () => {
    const told: string[] = []
    const plain: AnnouncingBroker = {
      announce: async (cid) => {
        told.push(cid.toString())
      }
    }
    const cids = [await cidOf('a'), await cidOf('b')]
    expect(announceWanted([plain, {}], cids, [PEER])).toBe(2)
    expect(told).toEqual(cids.map(String))
  })
})
