import * as v from 'valibot'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { Buffer } from 'node:buffer'
import { canonicalJson } from './canonical.ts'
import { PeerIdSchema } from './envelope.ts'
import { formatIssues } from './issues.ts'
import { InvalidSnapshotError } from '../errors.ts'

/** The largest snapshot file written or read: one block, so that any IPFS tool fetches it whole. */
export const MAX_SNAPSHOT_BYTES = 1024 * 1024

/** The directory at the root of a producer's outbox tree that holds its snapshots, one `<plugin>.json` each. */
export const SNAPSHOTS_DIR = 'snapshots'

/** A SQL value in a snapshot: bytes travel as `{ "$bytes": base64 }`. */
const ValueSchema = v.union([v.string(), v.number(), v.null(), v.strictObject({ $bytes: v.string() })])

/** How a snapshot names a table or a column: letters, digits and underscores (a reader refuses any other name). */
export const SNAPSHOT_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/** A plugin's tables at a vector of per-producer seqs, as a node saw them. */
const SnapshotSchema = v.strictObject({
  format: v.literal('cairn.snapshot/1'),
  plugin: v.pipe(v.string(), v.maxLength(64)),
  producer: PeerIdSchema,
  created_at: v.pipe(v.string(), v.isoTimestamp()),
  /**
   * how many of the plugin's migrations made its tables (its schema version): a node running another
   * version of the plugin (other tables or columns) does not load it. Absent in snapshots that predate it.
   */
  migrations: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(1_000_000))),
  /** per producer, the seq up to which every event is reflected in the tables */
  vector: v.pipe(
    v.record(PeerIdSchema, v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER))),
    v.check((r) => Object.keys(r).length <= 10_000, 'Too many producers')
  ),
  tables: v.record(
    v.pipe(v.string(), v.regex(SNAPSHOT_NAME, 'Expected a table name')),
    v.strictObject({ columns: v.array(v.pipe(v.string(), v.regex(SNAPSHOT_NAME, 'Expected a column name'))), rows: v.array(v.array(ValueSchema)) })
  )
})

export type Snapshot = v.InferOutput<typeof SnapshotSchema>

const SignedSnapshotSchema = v.strictObject({ snapshot: SnapshotSchema, sig: v.pipe(v.string(), v.maxLength(200)) })

const encoder = new TextEncoder()

/** @returns the snapshot signed with its producer's key, as the file `snapshots/<plugin>.json` holds it */
export async function signSnapshot(snapshot: Snapshot, key: PrivateKey): Promise<Uint8Array> {
  const sig = await key.sign(encoder.encode(canonicalJson(snapshot)))
  return encoder.encode(canonicalJson({ snapshot, sig: Buffer.from(sig).toString('base64') }))
}

/**
 * Parses a snapshot file and checks that `producer` signed it for `plugin`, and that every row has one value
 * per column.
 *
 * @returns the verified snapshot
 * @throws InvalidSnapshotError naming the reason: `oversized_snapshot`, `malformed_snapshot`, `wrong_producer`,
 * `wrong_plugin` or `bad_signature`
 */
export async function verifySnapshot(bytes: Uint8Array, producer: string, plugin: string): Promise<Snapshot> {
  const where = `snapshot of ${plugin} from ${producer}`
  if (bytes.length > MAX_SNAPSHOT_BYTES) throw new InvalidSnapshotError('oversized_snapshot', `Cannot use the ${where}: ${bytes.length} bytes is over ${MAX_SNAPSHOT_BYTES}`)
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch (err) {
    throw new InvalidSnapshotError('malformed_snapshot', `Cannot use the ${where}: not JSON: ${(err as Error).message}`)
  }
  const r = v.safeParse(SignedSnapshotSchema, json)
  if (!r.success) throw new InvalidSnapshotError('malformed_snapshot', `Cannot use the ${where}: ${formatIssues(r.issues).join('; ')}`)
  const { snapshot, sig } = r.output
  if (snapshot.producer !== producer) throw new InvalidSnapshotError('wrong_producer', `Cannot use the ${where}: it names producer ${snapshot.producer}`)
  if (snapshot.plugin !== plugin) throw new InvalidSnapshotError('wrong_plugin', `Cannot use the ${where}: it is a snapshot of ${snapshot.plugin}`)
  for (const [name, t] of Object.entries(snapshot.tables)) {
    const bad = t.rows.findIndex((row) => row.length !== t.columns.length)
    if (bad >= 0) throw new InvalidSnapshotError('malformed_snapshot', `Cannot use the ${where}: row ${bad} of ${name} has ${t.rows[bad].length} values for ${t.columns.length} columns`)
  }
  let ok = false
  try {
    const key = peerIdFromString(producer).publicKey
    ok = key != null && (await key.verify(encoder.encode(canonicalJson(snapshot)), Buffer.from(sig, 'base64')))
  } catch {
    ok = false
  }
  if (!ok) throw new InvalidSnapshotError('bad_signature', `Cannot use the ${where}: the signature does not verify with the producer's key (forged or tampered)`)
  return snapshot
}

/** @returns a digest of what a snapshot says (its vector and tables), to tell two snapshots of the same vector apart */
export function snapshotContent(snapshot: Snapshot): string {
  return canonicalJson({ vector: snapshot.vector, tables: snapshot.tables })
}
