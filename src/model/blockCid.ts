import type { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { equals } from 'uint8arrays/equals'

/**
 * @returns whether `bytes` are the block `cid` names: a SHA-256 multihash of exactly these bytes (the only
 * hash cairn writes or accepts)
 * @example
 * ```ts
 * if (!await matchesCid(cid, bytes)) throw new Error(`the block does not match ${cid}`)
 * ```
 */
export async function matchesCid(cid: CID, bytes: Uint8Array): Promise<boolean> {
  if (cid.multihash.code !== sha256.code) return false
  return equals((await sha256.digest(bytes)).digest, cid.multihash.digest)
}
