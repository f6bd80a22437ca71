import { generateKey } from '@libp2p/pnet'
import { sha256 } from 'multiformats/hashes/sha2'
import { toString as u8ToString } from 'uint8arrays/to-string'
import { ValidationError } from '../errors.ts'

const FORMAT = /^\/key\/swarm\/psk\/1\.0\.0\/\r?\n\/base16\/\r?\n([0-9a-fA-F]{64})\s*$/

/**
 * Checks that `text` is a standard IPFS swarm key (`/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex digits).
 *
 * @returns the key in canonical form, as @libp2p/pnet reads it
 * @throws ValidationError naming what is wrong
 */
export function parseSwarmKey(text: string, source = 'swarm.key'): Uint8Array {
  const m = FORMAT.exec(text)
  if (m == null) {
    throw new ValidationError(`Cannot read ${source}: not a swarm key; expected three lines: /key/swarm/psk/1.0.0/, /base16/, and 64 hex digits`)
  }
  return new TextEncoder().encode(`/key/swarm/psk/1.0.0/\n/base16/\n${m[1].toLowerCase()}`)
}

/** @returns a new random swarm key in the standard format */
export function newSwarmKey(): Uint8Array {
  const key = new Uint8Array(95)
  generateKey(key)
  return parseSwarmKey(new TextDecoder().decode(key))
}

/** @returns a short, stable name of the network a swarm key defines; it names the gossip topics */
export async function networkId(swarmKey: Uint8Array): Promise<string> {
  const digest = await sha256.digest(swarmKey)
  return u8ToString(digest.digest, 'base16').slice(0, 16)
}
