import * as v from 'valibot'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import { Buffer } from 'node:buffer'

/** Unpadded standard base64, with the runtime's native codec (multiformats' JS codec was a receiver's top cost). */
const base64 = {
  baseEncode: (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64').replace(/=+$/, ''),
  baseDecode: (text: string): Uint8Array => {
    if (!/^[A-Za-z0-9+/]*$/.test(text)) throw new SyntaxError('Non-base64 character')
    const b = Buffer.from(text, 'base64')
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
  }
}
import { canonicalJson } from './canonical.ts'
import { HlcSchema, PeerIdSchema } from './envelope.ts'
import { formatIssues } from './issues.ts'
import { InvalidHeadError } from '../errors.ts'
import { matchesCid } from './blockCid.ts'

/**
 * The one size limit of a head message (a signed head, with the blocks a hint carries): the gossip frame,
 * the head exchange's read limit and the parse all use it, so a head one path accepts every path can carry.
 */
export const MAX_HEAD_BYTES = 256 * 1024
/** A hint carries its commit's blocks only up to this many bytes in all (before base64)… */
export const HINT_MAX_BYTES = 96 * 1024
/** …and this many blocks; a message over either is not a hint an honest producer sends. */
export const HINT_MAX_BLOCKS = 256

const CidSchema = v.pipe(
  v.string(),
  v.maxLength(128),
  v.check((s) => {
    try {
      CID.parse(s)
      return true
    } catch {
      return false
    }
  }, 'Expected a CID')
)

/** A producer's head: its last seq, its outbox root, its clock and what it has processed from every other producer. */
const HeadSchema = v.strictObject({
  producer: PeerIdSchema,
  seq: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER)),
  root: CidSchema,
  hlc: HlcSchema,
  acks: v.pipe(
    v.record(PeerIdSchema, v.pipe(v.number(), v.integer(), v.minValue(0))),
    v.check((r) => Object.keys(r).length <= 10_000, 'Too many acks')
  ),
  /**
   * the highest seq this producer pruned without newer events superseding it (plain retention), 0 when none:
   * a reader's gap above it was compacted (covered by newer events), not lost
   */
  pruned_plain: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER))),
  /**
   * how many files this producer has compacted out of its tree so far (never decreasing): each changed the
   * directories on its path, so a reader's walk may read that many paths more than its new events justify
   */
  compacted: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER)))
})

export type Head = v.InferOutput<typeof HeadSchema>

/**
 * A head with its producer's Ed25519 signature over the head's canonical JSON. A hint may carry the
 * commit's new blocks (`[cid, base64 bytes]`), so that a receiver needs no round trip to fetch them;
 * each is checked against its CID, and only what the signed root reaches is ever read.
 */
const SignedHeadSchema = v.strictObject({
  head: HeadSchema,
  sig: v.pipe(v.string(), v.maxLength(200)),
  blocks: v.optional(v.array(v.tuple([v.pipe(v.string(), v.maxLength(128)), v.string()])))
})

type SignedHead = v.InferOutput<typeof SignedHeadSchema>

const encoder = new TextEncoder()

/** @returns the head signed with the producer's key, encoded for the wire */
export async function signHead(head: Head, key: PrivateKey): Promise<Uint8Array> {
  const sig = await key.sign(encoder.encode(canonicalJson(head)))
  return encoder.encode(canonicalJson({ head, sig: base64.baseEncode(sig) }))
}

/**
 * @returns the gossip hint of a signed head: with `blocks` when they fit the hint's budget (HINT_MAX_BYTES,
 * HINT_MAX_BLOCKS, and the whole message within MAX_HEAD_BYTES), else the signed head alone
 */
export function hintMessage(signed: Uint8Array, blocks: ReadonlyArray<{ cid: CID; bytes: Uint8Array }>): Uint8Array {
  const size = blocks.reduce((n, b) => n + b.bytes.length, 0)
  if (blocks.length === 0 || blocks.length > HINT_MAX_BLOCKS || size > HINT_MAX_BYTES) return signed
  const out = withBlocks(signed, blocks)
  return out.length <= MAX_HEAD_BYTES ? out : signed
}

/** @returns a signed head message that also carries `blocks`, whatever their size (hintMessage keeps the budget) */
export function withBlocks(signed: Uint8Array, blocks: ReadonlyArray<{ cid: CID; bytes: Uint8Array }>): Uint8Array {
  const message = JSON.parse(new TextDecoder().decode(signed)) as SignedHead
  message.blocks = blocks.map((b) => [b.cid.toString(), base64.baseEncode(b.bytes)])
  return encoder.encode(JSON.stringify(message))
}

/**
 * Parses a signed head from the wire and checks that the producer signed it.
 *
 * @returns the verified head
 * @throws InvalidHeadError with reason `malformed_head` or `bad_signature`
 */
export async function verifyHead(bytes: Uint8Array, maxBytes = MAX_HEAD_BYTES): Promise<Head> {
  return (await verifyHeadMessage(bytes, maxBytes)).head
}

/**
 * Like verifyHead, and also returns the head re-encoded without blocks (to store and relay) and the blocks
 * the message carried whose bytes match their CIDs.
 *
 * @throws InvalidHeadError with reason `oversized_head`, `malformed_head`, `oversized_hint` (carried blocks over
 * the hint's budget), `bad_signature` or `bad_block`
 */
export async function verifyHeadMessage(bytes: Uint8Array, maxBytes = MAX_HEAD_BYTES): Promise<VerifiedHead> {
  const known = verified.get(bytes)
  if (known != null && bytes.length <= maxBytes) return await known
  const key = bytes.length <= Math.min(MAX_RECENT_BYTES, maxBytes) ? recentKey.decode(bytes) : undefined
  const recent = key == null ? undefined : recentHeads.get(key)
  if (recent != null) return recent
  const result = checkHeadMessage(bytes, maxBytes)
  verified.set(bytes, result)
  result.then(
    (r) => {
      if (key == null || r.blocks.length > 0) return
      recentHeads.set(key, r)
      if (recentHeads.size > MAX_RECENT) recentHeads.delete(recentHeads.keys().next().value!)
    },
    () => {
      verified.delete(bytes)
    }
  )
  return await result
}

/** A head message that verified: the head, the head re-encoded without blocks, and the carried blocks. */
export interface VerifiedHead {
  head: Head
  signed: Uint8Array
  blocks: Array<{ cid: CID; bytes: Uint8Array }>
}

/**
 * Verifications under way or done, per message buffer: a gossip hint is checked by the topic validator
 * (before it is relayed) and again when it is applied; the second check reuses the first's result.
 * Keyed by the buffer itself, so it goes away with the message.
 */
const verified = new WeakMap<Uint8Array, Promise<VerifiedHead>>()

/**
 * Heads without blocks that verified lately, by their bytes: peers push and relay the same signed heads
 * again and again (in a network of ten, checking them anew was a fifth of an idle node's CPU). A key
 * holds the message's own bytes (latin1 gives each byte value its own character), so only the very
 * message that verified is found.
 */
const recentHeads = new Map<string, VerifiedHead>()
const recentKey = new TextDecoder('latin1')
const MAX_RECENT = 1024
const MAX_RECENT_BYTES = 4096

async function checkHeadMessage(bytes: Uint8Array, maxBytes: number): Promise<VerifiedHead> {
  if (bytes.length > maxBytes) throw new InvalidHeadError('oversized_head', `Cannot accept head: ${bytes.length} bytes is over the limit of ${maxBytes}`)
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch (err) {
    throw new InvalidHeadError('malformed_head', `Cannot read head: ${(err as Error).message}`)
  }
  const r = v.safeParse(SignedHeadSchema, json)
  if (!r.success) throw new InvalidHeadError('malformed_head', `Cannot read head: ${formatIssues(r.issues).join('; ')}`)
  const { head, sig } = r.output
  const carried = r.output.blocks ?? []
  // Checked before the signature and the hashes: an over-budget hint costs neither.
  const carriedBytes = carried.reduce((n, [, data]) => n + Math.floor((data.length * 3) / 4), 0)
  if (carried.length > HINT_MAX_BLOCKS || carriedBytes > HINT_MAX_BYTES) {
    throw new InvalidHeadError(
      'oversized_hint',
      `Cannot accept hint of ${head.producer}: it carries ${carried.length} blocks of ${carriedBytes} bytes, over the limit of ${HINT_MAX_BLOCKS} blocks and ${HINT_MAX_BYTES} bytes`
    )
  }
  let ok = false
  try {
    const key = peerIdFromString(head.producer).publicKey
    ok = key != null && (await key.verify(encoder.encode(canonicalJson(head)), base64.baseDecode(sig)))
  } catch {
    ok = false
  }
  if (!ok) throw new InvalidHeadError('bad_signature', `Cannot accept head of ${head.producer}: the signature does not verify with the producer's key`)
  const blocks: Array<{ cid: CID; bytes: Uint8Array }> = []
  for (const [text, data] of carried) {
    let cid: CID
    let block: Uint8Array
    try {
      cid = CID.parse(text)
      block = base64.baseDecode(data)
    } catch {
      throw new InvalidHeadError('bad_block', `Cannot accept head of ${head.producer}: a carried block is malformed`)
    }
    if (!(await matchesCid(cid, block))) {
      throw new InvalidHeadError('bad_block', `Cannot accept head of ${head.producer}: a carried block does not match its CID ${text}`)
    }
    blocks.push({ cid, bytes: block })
  }
  return { head, signed: r.output.blocks == null ? bytes : encoder.encode(canonicalJson({ head, sig })), blocks }
}
