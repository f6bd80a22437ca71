import type { SqlDatabase, SqlValue } from '../runtime/sqlite.ts'
import type { EventEnvelope } from '../model/envelope.ts'
import { pluginWrites } from './pluginState.ts'

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
export function rowToEnvelope(r: EventRow): EventEnvelope {
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

/** Filters for reading `events` in cursor order. */
export interface EventQuery {
  /** only rows after this cursor */
  after?: number
  /** only rows up to this cursor */
  upTo?: number
  /** only rows of these types (none for an empty list); undefined: every type */
  types?: readonly string[]
  producer?: string
  limit: number
  /** the newest rows first (the `limit` newest), instead of cursor order */
  newestFirst?: boolean
}

/** What recording an envelope did. */
export interface InsertOutcome {
  /** whether a row was added (false: this producer's event_id is already there) */
  added: boolean
  /** another producer whose event has the same event_id, when the row added shares it */
  collidesWith?: string
}

/** The meta key of how many events were added whose event_id another producer had used. */
const COLLISIONS_KEY = 'event_id_collisions'

/**
 * The `events` table: every event this node holds, its own and fetched, once per (producer, event_id), in
 * arrival order (`cursor`). An event_id is unique only within its producer: another producer's event with
 * the same event_id is a different event, kept and counted (`collisions()`), never merged.
 * `state` is 'pending' until every plugin has finished the row (applied, dead-lettered or held).
 */
export class EventsTable {
  private readonly db: SqlDatabase

  constructor(db: SqlDatabase) {
    this.db = db
  }

  /**
   * Records an accepted envelope, once per (producer, event_id).
   *
   * @returns whether a row was added (false for a duplicate)
   */
  insert(e: EventEnvelope, cid: string, receivedAt: number, options: { freshId?: boolean } = {}): boolean {
    return this.add(e, cid, receivedAt, options).added
  }

  /**
   * Records an accepted envelope, once per (producer, event_id), and counts it when another producer's
   * event has the same event_id (call it inside the transaction that stores the event).
   */
  add(e: EventEnvelope, cid: string, receivedAt: number, options: { freshId?: boolean } = {}): InsertOutcome {
    const added =
      this.db.run(
        `INSERT OR IGNORE INTO events (event_id, producer, seq, type, version, hlc, occurred_at, actor, correlation_id, causation_id, payload, cid, received_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        [e.event_id, e.producer, e.seq, e.type, e.version, e.hlc, e.occurred_at, e.actor ?? null, e.correlation_id ?? null, e.causation_id ?? null, JSON.stringify(e.payload), cid, receivedAt]
      ).changes > 0
    // An id this node has just minted (a new UUIDv7) has no earlier holder: a producer that copies it later is
    // counted when its event is added.
    if (!added || options.freshId === true) return { added }
    const other = this.db.get<{ producer: string }>('SELECT producer FROM events WHERE event_id = ? AND producer != ? LIMIT 1', [e.event_id, e.producer])
    if (other == null) return { added }
    this.db.run("INSERT INTO meta (key, value) VALUES (?, '1') ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)", [COLLISIONS_KEY])
    return { added, collidesWith: other.producer }
  }

  /** @returns how many events were added whose event_id another producer's event already had */
  collisions(): number {
    return Number(this.db.get<{ value: string }>('SELECT value FROM meta WHERE key = ?', [COLLISIONS_KEY])?.value ?? 0)
  }

  /**
   * @returns the row of an event: of `producer`'s event with this event_id, or, without a producer, of
   * the one that arrived first
   */
  byId(eventId: string, producer?: string): EventRow | undefined {
    if (producer != null) return this.db.get<EventRow>('SELECT * FROM events WHERE producer = ? AND event_id = ?', [producer, eventId])
    return this.db.get<EventRow>('SELECT * FROM events WHERE event_id = ? ORDER BY cursor LIMIT 1', [eventId])
  }

  /** @returns `producer`'s rows after `seq`, by seq */
  ofProducerAfter(producer: string, seq: number): EventRow[] {
    return this.db.all<EventRow>('SELECT * FROM events WHERE producer = ? AND seq > ? ORDER BY seq', [producer, seq])
  }

  /**
   * Deletes `producer`'s rows at `seqs`: this node's own events that cairn reclock withdrew (no other node takes
   * them, so no plugin here may keep or apply them).
   */
  deleteSeqs(producer: string, seqs: readonly number[]): void {
    for (const seq of seqs) this.db.run('DELETE FROM events WHERE producer = ? AND seq = ?', [producer, seq])
    pluginWrites(this.db).progress++
  }

  /** @returns how many of `producer`'s events after `seq` this table holds, and the lowest and highest of their seqs; undefined when none */
  seqsAfter(producer: string, seq: number): { count: number; from_seq: number; to_seq: number } | undefined {
    const r = this.db.get<{ n: number; lo: number | null; hi: number | null }>('SELECT count(*) AS n, min(seq) AS lo, max(seq) AS hi FROM events WHERE producer = ? AND seq > ?', [producer, seq])
    return r == null || r.n === 0 || r.lo == null || r.hi == null ? undefined : { count: r.n, from_seq: r.lo, to_seq: r.hi }
  }

  /** @returns rows in cursor order that match `q` */
  list(q: EventQuery): EventRow[] {
    const where: string[] = []
    const params: SqlValue[] = []
    if (q.after != null) {
      where.push('cursor > ?')
      params.push(q.after)
    }
    if (q.upTo != null) {
      where.push('cursor <= ?')
      params.push(q.upTo)
    }
    if (q.types != null) {
      if (q.types.length === 0) return []
      where.push(`type IN (${q.types.map(() => '?').join(',')})`)
      params.push(...q.types)
    }
    if (q.producer != null) {
      where.push('producer = ?')
      params.push(q.producer)
    }
    return this.db.all<EventRow>(`SELECT * FROM events ${where.length > 0 ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY cursor${q.newestFirst === true ? ' DESC' : ''} LIMIT ?`, [...params, q.limit])
  }

  /**
   * @param authors per producer, the stamp from which its membership changes are read ('' for all of them)
   * @param perAuthor how many of each author's are read at most, the first in stamp order
   * @returns the `cairn.members` events of those producers stamped at or after theirs, in arrival order
   */
  membershipChanges(authors: ReadonlyMap<string, string>, perAuthor: number): EventRow[] {
    // One query per author, through events_membership: an author's changes before its stamp, or past its
    // first `perAuthor`, cost nothing here, however many; what it reads depends on the rows held, not on
    // the order they came in.
    const rows: EventRow[] = []
    for (const [producer, since] of authors) {
      const own = this.db.all<EventRow>("SELECT * FROM events WHERE producer = ? AND type = 'cairn.members' AND hlc >= ? ORDER BY hlc, event_id LIMIT ?", [producer, since, perAuthor])
      for (const r of own) rows.push(r)
    }
    return rows.sort((a, b) => a.cursor - b.cursor)
  }

  /** @returns the highest cursor in the table (0 when empty) */
  maxCursor(): number {
    return this.db.get<{ c: number | null }>('SELECT max(cursor) AS c FROM events')?.c ?? 0
  }

  /**
   * @returns the highest cursor ever handed out (0 before the first event): rows deleted by retention
   * keep it, so a cursor above it was never this database's
   */
  highWater(): number {
    const handedOut = this.db.get<{ seq: number }>("SELECT seq FROM sqlite_sequence WHERE name = 'events'")?.seq ?? 0
    return Math.max(handedOut, this.maxCursor())
  }

  /**
   * @returns the id of this database's cursor space: made once with the events table, so a consumer that
   * kept a cursor can tell a reset (or another node) from a quiet stream
   */
  cursorSpace(): string {
    const v = this.db.get<{ value: string }>("SELECT value FROM meta WHERE key = 'cursor_space'")?.value
    if (v == null) throw new TypeError('meta.cursor_space is missing: the migration that makes it did not run')
    return v
  }

  /** @returns how many rows the table holds */
  count(): number {
    return this.db.get<{ n: number }>('SELECT count(*) AS n FROM events')?.n ?? 0
  }

  /** @returns how many rows arrived after `cursor` (a plugin's backlog, from its cursor) */
  countAfter(cursor: number): number {
    return this.db.get<{ n: number }>('SELECT count(*) AS n FROM events WHERE cursor > ?', [cursor])?.n ?? 0
  }

  /** @returns how many rows every plugin has processed */
  doneCount(): number {
    // Only pending rows are indexed by state: the others are all rows but those.
    return this.db.get<{ n: number }>("SELECT (SELECT count(*) FROM events) - (SELECT count(*) FROM events WHERE state = 'pending') AS n")?.n ?? 0
  }

  /**
   * Deletes the rows received before `time` (ms) that every plugin has processed.
   *
   * @param changeAuthors the producers whose membership changes stay (undefined: everyone's)
   * @returns how many rows went
   */
  deleteProcessedBefore(time: number, changeAuthors?: readonly string[]): number {
    // cairn's own events (membership changes) of owners, past and present, are the state every node folds:
    // they are never deleted. Those of anyone else count nowhere, and go as the producer's other events do.
    const authors = changeAuthors == null ? null : JSON.stringify(changeAuthors)
    return this.db.run(
      `DELETE FROM events WHERE received_at < ? AND state != 'pending'
          AND (type NOT LIKE 'cairn.%' OR (? IS NOT NULL AND producer NOT IN (SELECT value FROM json_each(?))))`,
      [time, authors, authors]
    ).changes
  }

  /** @returns the seqs of `producer`'s events in cairn's reserved namespace (membership changes), ascending */
  reservedSeqs(producer: string): number[] {
    return this.db.all<{ seq: number }>("SELECT seq FROM events WHERE producer = ? AND type LIKE 'cairn.%' ORDER BY seq", [producer]).map((r) => r.seq)
  }

  /** @returns how many rows some plugin has not processed yet */
  pendingCount(): number {
    return this.db.get<{ n: number }>("SELECT count(*) AS n FROM events WHERE state = 'pending'")?.n ?? 0
  }

  /** @returns per producer, the lowest seq some plugin has not processed yet */
  lowestPending(): Map<string, number> {
    return new Map(
      this.db.all<{ producer: string; s: number }>("SELECT producer, min(seq) AS s FROM events INDEXED BY events_pending WHERE state = 'pending' GROUP BY producer").map((r) => [r.producer, r.s])
    )
  }

  /** @returns the rows queued for replay through `plugin` (`cairn replay`, or held events it now knows), in cursor order */
  queuedForReplay(plugin: string): EventRow[] {
    return this.db.all<EventRow>('SELECT e.* FROM plugin_replay r JOIN events e ON e.producer = r.producer AND e.event_id = r.event_id WHERE r.plugin = ? ORDER BY e.cursor', [plugin])
  }

  /** @returns up to `limit` rows whose retry through `plugin` is due at `now`, in cursor order */
  dueRetries(plugin: string, now: number, limit: number): EventRow[] {
    return this.db.all<EventRow>(
      'SELECT e.* FROM plugin_failures f JOIN events e ON e.producer = f.producer AND e.event_id = f.event_id WHERE f.plugin = ? AND f.next_at <= ? ORDER BY e.cursor LIMIT ?',
      [plugin, now, limit]
    )
  }

  /**
   * Marks the rows up to `cursor` as processed by every plugin, but for those waiting for a retry of some
   * plugin: each of them stays pending until it is applied or dead-lettered.
   */
  markDone(cursor: number, plugins: readonly string[]): void {
    // Only the loaded plugins' retries hold a row back: a plugin removed from --plugins no longer runs them.
    this.db.run(
      `UPDATE events SET state = 'done' WHERE state = 'pending' AND cursor <= ?
         AND NOT EXISTS (SELECT 1 FROM plugin_failures f WHERE f.producer = events.producer AND f.event_id = events.event_id
           AND f.plugin IN (${plugins.map(() => '?').join(',')}))`,
      [cursor, ...plugins]
    )
    pluginWrites(this.db).progress++
  }

  /** @returns the lowest cursor of a row some plugin has not finished, or undefined when there is none */
  lowestPendingCursor(): number | undefined {
    return this.db.get<{ c: number | null }>("SELECT min(cursor) AS c FROM events WHERE state = 'pending'")?.c ?? undefined
  }
}

/**
 * Records an accepted envelope in `events` of `db`, once per (producer, event_id) (for tests of plugins that hold a
 * bare database).
 *
 * @returns whether a row was added (false for a duplicate)
 */
export function insertEvent(db: SqlDatabase, e: EventEnvelope, cid: string, receivedAt: number): boolean {
  return new EventsTable(db).insert(e, cid, receivedAt)
}
