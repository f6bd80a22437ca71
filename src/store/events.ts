import type { SqlDatabase } from '../runtime/sqlite.ts'
import type { EventEnvelope } from '../model/envelope.ts'

/**
 * Records an accepted envelope in `events`, once per event_id.
 *
 * @returns whether a row was added (false for a duplicate)
 */
export function insertEvent (db: SqlDatabase, e: EventEnvelope, cid: string, receivedAt: number): boolean {
  return db.run(
    `INSERT OR IGNORE INTO events (event_id, producer, seq, type, version, hlc, occurred_at, actor, correlation_id, causation_id, payload, cid, received_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    [e.event_id, e.producer, e.seq, e.type, e.version, e.hlc, e.occurred_at, e.actor ?? null, e.correlation_id ?? null, e.causation_id ?? null, JSON.stringify(e.payload), cid, receivedAt]
  ).changes > 0
}

/** A row of `events`. */
export interface EventRow {
  cursor: number
  event_id: string
  producer: string
  seq: number
  type: string
  version: number
  hlc: string
  occurred_at: string
  actor: string | null
  correlation_id: string | null
  causation_id: string | null
  payload: string
  cid: string
  received_at: number
  state: string
}

/** @returns the envelope a row of `events` holds */
export function rowToEnvelope (r: EventRow): EventEnvelope {
  const e: EventEnvelope = {
    event_id: r.event_id,
    type: r.type,
    version: r.version,
    producer: r.producer,
    seq: r.seq,
    hlc: r.hlc,
    occurred_at: r.occurred_at,
    payload: JSON.parse(r.payload)
  }
  if (r.actor != null) e.actor = r.actor
  if (r.correlation_id != null) e.correlation_id = r.correlation_id
  if (r.causation_id != null) e.causation_id = r.causation_id
  return e
}

/** @returns for every producer, the highest contiguous seq this node has processed */
export function currentAcks (db: SqlDatabase): Record<string, number> {
  const acks: Record<string, number> = {}
  for (const r of db.all<{ producer: string, processed_seq: number }>('SELECT producer, processed_seq FROM producers')) {
    acks[r.producer] = r.processed_seq
  }
  return acks
}
