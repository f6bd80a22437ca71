import { CID } from 'multiformats/cid'

/** The char codes of RFC 4648 base32, lowercase: the multibase of a CIDv1's string ('b'). */
const BASE32 = Array.from('abcdefghijklmnopqrstuvwxyz234567', (c) => c.charCodeAt(0))

/**
 * @returns the string of a CID, as `cid.toString()` gives it, built as one flat string: multiformats
 * builds it by concatenation, and in JavaScriptCore that string is a rope of ~60 cells (~2 KiB) until
 * something reads it whole, for every CID a catch-up prints (each shard, each event file)
 */
export function cidString(cid: CID): string {
  return cid.version === 0 ? cid.toString() : base32String(cid.bytes)
}

/** @returns the string of the CID whose bytes these are (see cidString), without a CID object for a CIDv1 */
export function cidStringOfBytes(bytes: Uint8Array): string {
  return bytes[0] === 1 ? base32String(bytes) : CID.decode(bytes).toString()
}

/**
 * @returns the CID of `bytes`, its string (as cidString gives it) already cached on it, so that every
 * `toString()` of it (block store keys, maps of a fetch, rows) returns that flat string. The CID keeps
 * `bytes` as its own: pass bytes nothing else changes (a copy).
 * @throws Error when the bytes are not a CID
 */
export function cidFromBytes(bytes: Uint8Array<ArrayBuffer>): CID {
  // A CIDv1 starts with its version, 1; anything else (a CIDv0 is a bare multihash) is decoded as it is.
  // parse() is how multiformats caches a CID's string; given these bytes as the string's decoding, it does
  // not decode the base32 back.
  return bytes[0] === 1 ? CID.parse(base32String(bytes), { decode: () => bytes }) : CID.decode(bytes)
}

/** The most char codes passed to one String.fromCharCode.apply (JavaScriptCore refuses some hundreds of thousands). */
const APPLY_CODES = 8192

/** @returns 'b' and the base32 of `bytes`, unpadded, as one flat string */
function base32String(bytes: Uint8Array): string {
  const codes = new Uint16Array(1 + Math.ceil((bytes.length * 8) / 5))
  codes[0] = 98
  let k = 1
  let buffer = 0
  let bits = 0
  for (let i = 0; i < bytes.length; i++) {
    buffer = ((buffer << 8) | bytes[i]) & 0xfff
    bits += 8
    while (bits >= 5) {
      bits -= 5
      codes[k++] = BASE32[(buffer >> bits) & 31]
    }
  }
  if (bits > 0) codes[k++] = BASE32[(buffer << (5 - bits)) & 31]
  if (codes.length <= APPLY_CODES) return String.fromCharCode.apply(null, codes as unknown as number[])
  // A CID's length is a member's choice (an identity CID holds its block): apply takes a bounded number of arguments.
  let out = ''
  for (let at = 0; at < codes.length; at += APPLY_CODES) out += String.fromCharCode.apply(null, codes.subarray(at, at + APPLY_CODES) as unknown as number[])
  return out
}
