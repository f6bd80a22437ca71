import { MigrationWaitError } from '../errors.ts'
import { BUSY_TIMEOUT_MS, isBusy, type SqlDatabase } from '../runtime/sqlite.ts'

/** The columns after (plugin, event_id) of each plugin table that migration 3 re-keys. */
const PLUGIN_TABLE_COLUMNS: Record<string, string> = {
  plugin_applied: 'applied_at INTEGER NOT NULL',
  plugin_failures: 'attempts INTEGER NOT NULL, last_error TEXT NOT NULL, next_at INTEGER NOT NULL',
  dead_letters: 'attempts INTEGER NOT NULL, error TEXT NOT NULL, dead_at INTEGER NOT NULL',
  plugin_held: 'version INTEGER NOT NULL, held_at INTEGER NOT NULL',
  plugin_replay: 'requested_at INTEGER NOT NULL',
  plugin_effects: 'attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, next_at INTEGER NOT NULL, done_at INTEGER'
}

/** @returns SQL that rebuilds a plugin table keyed by (plugin, producer, event_id), the producer from `events` */
function rekey(table: string): string {
  const columns = PLUGIN_TABLE_COLUMNS[table]
  const names = columns
    .split(',')
    .map((c) => c.trim().split(' ')[0])
    .map((c) => `t.${c}`)
    .join(', ')
  return `CREATE TABLE ${table}_v3 (plugin TEXT NOT NULL, producer TEXT NOT NULL, event_id TEXT NOT NULL, ${columns}, PRIMARY KEY (plugin, producer, event_id));
   INSERT INTO ${table}_v3 SELECT t.plugin, coalesce((SELECT e.producer FROM events e WHERE e.event_id = t.event_id), ''), t.event_id, ${names} FROM ${table} t;
   DROP TABLE ${table};
   ALTER TABLE ${table}_v3 RENAME TO ${table};`
}

/** The database's schema is newer than this build knows: a newer cairn wrote it (not damage: run that cairn). */
export class SchemaAheadError extends Error {
  constructor(path: string, current: number, latest: number) {
    super(`Cannot open ${path}: its schema version ${current} is newer than this cairn knows (${latest}); run a newer cairn`)
    this.name = 'SchemaAheadError'
  }
}

/** The database's schema is older than this build's, and migrating it was not allowed. */
export class SchemaBehindError extends Error {
  readonly current: number
  readonly latest: number
  constructor(current: number, latest: number) {
    super(`its schema version ${current} is older than this cairn's (${latest})`)
    this.name = 'SchemaBehindError'
    this.current = current
    this.latest = latest
  }
}

/**
 * How long an open waits in all for another process's migration of the same database: a node starting with a
 * new binary, or a CLI verb migrating a stopped node's database (a step that rebuilds `events` takes minutes
 * on a large one).
 */
export const MIGRATION_WAIT_MS = 15 * 60_000

export interface MigrateOptions {
  /** false: migrate nothing, and throw SchemaBehindError when the database is older */
  apply?: boolean
  /** the most time to wait in all while another process holds the write lock of a database still behind (default MIGRATION_WAIT_MS) */
  waitMs?: number
  /** told once, with a line to show the operator, when this process starts waiting for another one's migration */
  onWait?: (line: string) => void
}

/**
 * Applies the numbered migrations that the database has not seen, each in its own transaction,
 * and records each in `schema_migrations`. While another process holds the write lock of the database and
 * its schema is still behind (a migration under way), it waits for that process, up to `options.waitMs`.
 *
 * @returns the schema version now in force
 * @throws Error when the database is newer than this build of cairn; SchemaBehindError (`apply: false`);
 * MigrationWaitError when another process still held the write lock after `waitMs`
 */
export function migrate(db: SqlDatabase, migrations: readonly string[] = MIGRATIONS, table = 'schema_migrations', options: MigrateOptions = {}): number {
  db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`)
  db.exec(`CREATE TABLE IF NOT EXISTS ${table} (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`)
  const version = (): number => db.get<{ v: number | null }>(`SELECT max(version) AS v FROM ${table}`)?.v ?? 0
  const current = version()
  if (current > migrations.length) {
    throw new SchemaAheadError(db.path, current, migrations.length)
  }
  if (options.apply === false && current < migrations.length) throw new SchemaBehindError(current, migrations.length)
  const waitMs = options.waitMs ?? MIGRATION_WAIT_MS
  /** when the first attempt that found the write lock taken began */
  let waitingSince: number | undefined
  try {
    for (let i = current; i < migrations.length; i++) {
      for (;;) {
        const began = Date.now()
        const left = waitingSince == null ? waitMs : waitingSince + waitMs - began
        db.exec(`PRAGMA busy_timeout = ${Math.max(1, Math.min(BUSY_TIMEOUT_MS, left))}`)
        try {
          db.transaction(() => {
            // Read again under the write lock: another process (a node starting, a CLI verb) may have applied it since.
            if (db.get<{ done: number }>(`SELECT 1 AS done FROM ${table} WHERE version = ?`, [i + 1]) != null) return
            db.exec(migrations[i])
            db.run(`INSERT INTO ${table} (version, applied_at) VALUES (?, ?)`, [i + 1, Date.now()])
          })
          break
        } catch (err) {
          if (!isBusy(err)) throw err
          const at = version()
          if (waitingSince == null) {
            waitingSince = began
            options.onWait?.(
              `${db.path} is at schema version ${at} of ${migrations.length} and another process holds its write lock (a migration under way, or another long write): waiting up to ${Math.round(waitMs / 1000)} s for it to finish`
            )
          }
          if (Date.now() - waitingSince >= waitMs) throw new MigrationWaitError(at, migrations.length, Date.now() - waitingSince)
        }
      }
    }
  } finally {
    db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`)
  }
  return migrations.length
}

/**
 * cairn's own schema, in order. A migration is never edited once released: add a new one.
 * Plugins keep their own migrations (see src/plugins).
 */
export const MIGRATIONS: readonly string[] = [
  // 1: events, producers, the own outbox, gaps
  `CREATE TABLE events (
     cursor INTEGER PRIMARY KEY AUTOINCREMENT,
     event_id TEXT NOT NULL UNIQUE,
     producer TEXT NOT NULL,
     seq INTEGER NOT NULL,
     type TEXT NOT NULL,
     version INTEGER NOT NULL,
     hlc TEXT NOT NULL,
     occurred_at TEXT NOT NULL,
     actor TEXT,
     correlation_id TEXT,
     causation_id TEXT,
     payload TEXT NOT NULL,
     cid TEXT NOT NULL,
     received_at INTEGER NOT NULL,
     state TEXT NOT NULL DEFAULT 'pending'
   );
   CREATE UNIQUE INDEX events_producer_seq ON events (producer, seq);
   CREATE INDEX events_type ON events (type, cursor);
   CREATE INDEX events_state ON events (state, cursor);
   CREATE INDEX events_order ON events (hlc, producer, event_id);
   CREATE TABLE producers (
     producer TEXT PRIMARY KEY,
     head_seq INTEGER NOT NULL DEFAULT 0,
     head_root TEXT,
     head_hlc TEXT,
     head_message BLOB,
     head_received_at INTEGER,
     acks TEXT NOT NULL DEFAULT '{}',
     synced_root TEXT,
     processed_seq INTEGER NOT NULL DEFAULT 0,
     last_error TEXT
   );
   CREATE TABLE outbox (
     seq INTEGER PRIMARY KEY,
     event_id TEXT NOT NULL UNIQUE,
     bucket TEXT NOT NULL,
     name TEXT NOT NULL,
     cid TEXT NOT NULL,
     size INTEGER NOT NULL,
     created_at INTEGER NOT NULL,
     pruned_at INTEGER
   );
   CREATE INDEX outbox_bucket ON outbox (bucket, name);
   CREATE TABLE gaps (
     producer TEXT NOT NULL,
     from_seq INTEGER NOT NULL,
     to_seq INTEGER NOT NULL,
     detected_at INTEGER NOT NULL,
     PRIMARY KEY (producer, from_seq)
   );
   CREATE TABLE outbox_dirs (path TEXT PRIMARY KEY, cid TEXT NOT NULL, size INTEGER NOT NULL);
   CREATE TABLE remote_dirs (
     producer TEXT NOT NULL,
     path TEXT NOT NULL,
     cid TEXT NOT NULL,
     PRIMARY KEY (producer, path)
   );
   CREATE TABLE quarantine (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     producer TEXT NOT NULL,
     path TEXT NOT NULL,
     cid TEXT,
     reason TEXT NOT NULL,
     detail TEXT NOT NULL,
     from_peer TEXT,
     detected_at INTEGER NOT NULL,
     UNIQUE (producer, path)
   );
   CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);`,
  // 2: the plugin host's bookkeeping
  `CREATE TABLE plugin_migrations (plugin TEXT NOT NULL, version INTEGER NOT NULL, applied_at INTEGER NOT NULL, PRIMARY KEY (plugin, version));
   CREATE TABLE plugin_cursors (plugin TEXT PRIMARY KEY, cursor INTEGER NOT NULL);
   CREATE TABLE plugin_applied (plugin TEXT NOT NULL, event_id TEXT NOT NULL, applied_at INTEGER NOT NULL, PRIMARY KEY (plugin, event_id));
   CREATE TABLE plugin_failures (plugin TEXT NOT NULL, event_id TEXT NOT NULL, attempts INTEGER NOT NULL, last_error TEXT NOT NULL, next_at INTEGER NOT NULL, PRIMARY KEY (plugin, event_id));
   CREATE TABLE dead_letters (plugin TEXT NOT NULL, event_id TEXT NOT NULL, attempts INTEGER NOT NULL, error TEXT NOT NULL, dead_at INTEGER NOT NULL, PRIMARY KEY (plugin, event_id));
   CREATE TABLE plugin_held (plugin TEXT NOT NULL, event_id TEXT NOT NULL, version INTEGER NOT NULL, held_at INTEGER NOT NULL, PRIMARY KEY (plugin, event_id));
   CREATE TABLE plugin_replay (plugin TEXT NOT NULL, event_id TEXT NOT NULL, requested_at INTEGER NOT NULL, PRIMARY KEY (plugin, event_id));
   CREATE TABLE plugin_effects (plugin TEXT NOT NULL, event_id TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, next_at INTEGER NOT NULL, done_at INTEGER, PRIMARY KEY (plugin, event_id));
   CREATE INDEX plugin_effects_due ON plugin_effects (done_at, next_at);`,
  // 3: an event is (producer, event_id). `events` is rebuilt with that key, keeping every row, its cursor
  // and the AUTOINCREMENT high-water mark (so that no cursor is ever handed out twice). The plugin tables
  // gain the producer, taken from the event's row; a row whose event is no longer in `events` keeps
  // producer '' (recorded when event_ids were unique across producers, it matches any producer).
  `CREATE TABLE events_v3 (
     cursor INTEGER PRIMARY KEY AUTOINCREMENT,
     event_id TEXT NOT NULL,
     producer TEXT NOT NULL,
     seq INTEGER NOT NULL,
     type TEXT NOT NULL,
     version INTEGER NOT NULL,
     hlc TEXT NOT NULL,
     occurred_at TEXT NOT NULL,
     actor TEXT,
     correlation_id TEXT,
     causation_id TEXT,
     payload TEXT NOT NULL,
     cid TEXT NOT NULL,
     received_at INTEGER NOT NULL,
     state TEXT NOT NULL DEFAULT 'pending',
     UNIQUE (producer, event_id)
   );
   INSERT INTO events_v3 SELECT cursor, event_id, producer, seq, type, version, hlc, occurred_at, actor, correlation_id, causation_id, payload, cid, received_at, state FROM events ORDER BY cursor;
   DELETE FROM sqlite_sequence WHERE name = 'events_v3';
   INSERT INTO sqlite_sequence (name, seq) SELECT 'events_v3', seq FROM sqlite_sequence WHERE name = 'events';
   DROP TABLE events;
   ALTER TABLE events_v3 RENAME TO events;
   CREATE UNIQUE INDEX events_producer_seq ON events (producer, seq);
   CREATE INDEX events_event_id ON events (event_id);
   CREATE INDEX events_type ON events (type, cursor);
   CREATE INDEX events_state ON events (state, cursor);
   CREATE INDEX events_order ON events (hlc, producer, event_id);
   ${['plugin_applied', 'plugin_failures', 'dead_letters', 'plugin_held', 'plugin_replay', 'plugin_effects'].map(rekey).join('\n')}
   CREATE INDEX plugin_effects_due ON plugin_effects (done_at, next_at);
   CREATE INDEX plugin_failures_due ON plugin_failures (plugin, next_at);
   CREATE INDEX plugin_failures_event ON plugin_failures (producer, event_id);`,
  // 4: the seq up to which the directories of a producer's tree were last walked whole (the walk's budget starts there)
  'ALTER TABLE producers ADD COLUMN synced_seq INTEGER NOT NULL DEFAULT 0',
  // 5: keyed compaction. `state_keys`: the state keys each applied event writes, per plugin (the newest per key
  // decides what may be compacted); `outbox.compacted`: a file pruned because newer events superseded it;
  // `producers.pruned_plain`: the highest seq a producer's head says it pruned without that (NULL: unknown);
  // `producers.joined_seq`: its head seq when this node first heard of it (below it is history, not a gap);
  // `gaps.kind`: 'lost' (an alarm), 'compacted' (covered by newer events) or 'horizon' (before this node joined).
  // Signed snapshots: `snapshots_out`, the one this node publishes per plugin; `snapshots_loaded`, the one a
  // plugin's state was loaded from (its vector: events up to it are in the tables already).
  `CREATE TABLE state_keys (
     plugin TEXT NOT NULL,
     key TEXT NOT NULL,
     producer TEXT NOT NULL,
     seq INTEGER NOT NULL,
     order_key TEXT NOT NULL,
     PRIMARY KEY (producer, seq, plugin, key)
   );
   CREATE INDEX state_keys_newest ON state_keys (plugin, key, order_key);
   ALTER TABLE outbox ADD COLUMN compacted INTEGER NOT NULL DEFAULT 0;
   CREATE INDEX outbox_pruned_plain ON outbox (seq) WHERE pruned_at IS NOT NULL AND compacted = 0;
   ALTER TABLE producers ADD COLUMN pruned_plain INTEGER;
   ALTER TABLE producers ADD COLUMN joined_seq INTEGER;
   UPDATE producers SET joined_seq = 0;
   ALTER TABLE gaps ADD COLUMN kind TEXT NOT NULL DEFAULT 'lost';
   CREATE TABLE snapshots_out (plugin TEXT PRIMARY KEY, cid TEXT NOT NULL, size INTEGER NOT NULL, vector TEXT NOT NULL, created_at INTEGER NOT NULL);
   CREATE TABLE snapshots_loaded (plugin TEXT PRIMARY KEY, producer TEXT NOT NULL, vector TEXT NOT NULL, created_at TEXT NOT NULL, loaded_at INTEGER NOT NULL);`,
  // 6: how many files a producer's head says it compacted out of its tree so far (NULL: it does not say), and
  // that count at the last whole walk: the files compacted since widen the next walk's directory budget
  `ALTER TABLE producers ADD COLUMN head_compacted INTEGER;
   ALTER TABLE producers ADD COLUMN synced_compacted INTEGER NOT NULL DEFAULT 0;`,
  // 7: (issue 23) the cursor space: a random id for this database's event cursors, so a consumer can tell a reset;
  // the idempotency key a publish came with (its event_id when it came with a UUIDv7 one) and a hash of its request
  `INSERT OR IGNORE INTO meta (key, value) VALUES ('cursor_space', lower(hex(randomblob(16))));
   ALTER TABLE outbox ADD COLUMN idempotency_key TEXT;
   ALTER TABLE outbox ADD COLUMN request_hash TEXT;
   CREATE UNIQUE INDEX outbox_idempotency_key ON outbox (idempotency_key) WHERE idempotency_key IS NOT NULL;`,
  // 8: (issue 24) fewer index writes per event: `events_order` served no query (the order by (hlc, producer,
  // event_id) is taken in memory), and only the rows some plugin has not finished are looked up by state, so
  // the index of every row's state becomes one of the pending rows alone (a row leaves it when it is done)
  `DROP INDEX IF EXISTS events_order;
   DROP INDEX IF EXISTS events_state;
   CREATE INDEX events_pending ON events (cursor) WHERE state = 'pending';`,
  // 9: an effect that threw PermanentError is given up (done, with the time it gave up and its error), and
  // status counts those without reading every effect ever run
  `ALTER TABLE plugin_effects ADD COLUMN gave_up_at INTEGER;
   CREATE INDEX plugin_effects_gave_up ON plugin_effects (gave_up_at) WHERE gave_up_at IS NOT NULL;`,
  // 10: the roots of the last heads this node signed (SIGNED_ROOTS in outbox.ts): a head of one of them that a
  // peer hands back is this node's own, and its fork check (sync/forkCheck.ts) is skipped
  `CREATE TABLE signed_roots (n INTEGER PRIMARY KEY, root TEXT NOT NULL);
   CREATE INDEX signed_roots_root ON signed_roots (root);`,
  // 11: the digest of each plugin migration's text as it ran, so that a start refuses a plugin whose applied
  // migration was edited since (NULL: run before digests were recorded; the next start takes it from the text then)
  'ALTER TABLE plugin_migrations ADD COLUMN digest TEXT',
  // 12: an own event withdrawn by `cairn reclock` (`withdrawn`): its row keeps its seq and event_id, not its
  // idempotency key, which goes with the request the republish file holds. An event_id is no longer unique here:
  // an event published under a UUIDv7 key, withdrawn, is published again under that key and so that event_id
  // (SQLite drops a UNIQUE constraint only by rebuilding the table).
  `CREATE TABLE outbox_v12 (
     seq INTEGER PRIMARY KEY,
     event_id TEXT NOT NULL,
     bucket TEXT NOT NULL,
     name TEXT NOT NULL,
     cid TEXT NOT NULL,
     size INTEGER NOT NULL,
     created_at INTEGER NOT NULL,
     pruned_at INTEGER,
     compacted INTEGER NOT NULL DEFAULT 0,
     idempotency_key TEXT,
     request_hash TEXT,
     withdrawn INTEGER NOT NULL DEFAULT 0
   );
   INSERT INTO outbox_v12 (seq, event_id, bucket, name, cid, size, created_at, pruned_at, compacted, idempotency_key, request_hash)
     SELECT seq, event_id, bucket, name, cid, size, created_at, pruned_at, compacted, idempotency_key, request_hash FROM outbox;
   DROP TABLE outbox;
   ALTER TABLE outbox_v12 RENAME TO outbox;
   CREATE INDEX outbox_bucket ON outbox (bucket, name);
   CREATE INDEX outbox_pruned_plain ON outbox (seq) WHERE pruned_at IS NOT NULL AND compacted = 0;
   CREATE UNIQUE INDEX outbox_idempotency_key ON outbox (idempotency_key) WHERE idempotency_key IS NOT NULL;
   CREATE INDEX outbox_event_id ON outbox (event_id);`,
  // 13: the membership fold reads each author's changes from a stamp on, the first in stamp order
  // (EventsTable.membershipChanges): what a member wrote before it was made an owner is never read past, and
  // what one author wrote does not push another's out
  "CREATE INDEX IF NOT EXISTS events_membership ON events (producer, hlc, event_id) WHERE type = 'cairn.members'",
  // 14: a producer's gaps past GAPS_KEEP rows of a kind widen its last gap of that kind (GapsTable.record), found through
  // gaps_kind; `missing` counts the seqs a widened row misses (NULL: its whole range), which it no longer spans alone
  `ALTER TABLE gaps ADD COLUMN missing INTEGER;
   CREATE INDEX gaps_kind ON gaps (producer, kind, from_seq);`
]
