import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import * as Digest from 'multiformats/hashes/digest'
import { createHash } from 'node:crypto'

/** One entry of a UnixFS directory. */
export interface DirEntry {
  name: string
  cid: CID
  /** the cumulative size of the entry's DAG (Tsize) */
  size: number
}

/** An encoded block. */
export interface Block {
  cid: CID
  bytes: Uint8Array
}

const DIRECTORY_DATA = new UnixFS({ type: 'directory' }).marshal()

/** @returns the sha2-256 multihash of `bytes`, computed at once (multiformats' hasher copies the digest twice on the way) */
export function sha256Digest(bytes: Uint8Array): Digest.Digest<typeof sha256.code, number> {
  return Digest.create(sha256.code, createHash('sha256').update(bytes).digest())
}

/** @returns the raw block of a small file: its CID is what IPFS tools give a one-block file with raw leaves */
export function fileBlockSync(bytes: Uint8Array): Block {
  return { cid: CID.createV1(raw.code, sha256Digest(bytes)), bytes }
}

/** @returns the raw block of a small file (see fileBlockSync) */
export async function fileBlock(bytes: Uint8Array): Promise<Block> {
  return fileBlockSync(bytes)
}

/**
 * Encodes a plain UnixFS directory (dag-pb) that any IPFS tool can list.
 *
 * @returns the block and the DAG's cumulative size, to link it from its parent
 */
export async function directoryBlock(entries: readonly DirEntry[]): Promise<Block & { size: number }> {
  const node = dagPb.prepare({
    Data: DIRECTORY_DATA,
    Links: entries.map((e) => ({ Name: e.name, Hash: e.cid, Tsize: e.size }))
  })
  const bytes = dagPb.encode(node)
  const cid = CID.createV1(dagPb.code, sha256Digest(bytes))
  return { cid, bytes, size: bytes.length + entries.reduce((n, e) => n + e.size, 0) }
}

/** @returns whether the CID is of a dag-pb node */
export const isDagPb = (cid: CID): boolean => cid.code === dagPb.code
