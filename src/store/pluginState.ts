import type { SqlDatabase } from '../runtime/sqlite.ts'
import { quoteIdent } from './identifiers.ts'

/** An event's identity: its producer and its event_id (an event_id is unique only within its producer). */
export interface EventKey {
  producer: string
  event_id: string
}

/** One dead letter: a (plugin, event) pair that failed every attempt or could never be applied. */
export interface DeadLetter {
  plugin: string
  event_id: string
  type: string
  producer: string
  seq: number
  attempts: number
  error: string
  dead_at: string
}

/** An event held for a plugin because no loaded version of it knows the event's version. */
export interface HeldEvent {
  plugin: string
  event_id: string
  producer: string
  type: string
  version: number
}

/** How many events one plugin holds of one type and version. */
export interface HeldGroup {
  plugin: string
  type: string
  version: number
  count: number
}

/**
 * What `cairn replay` selects: one event, every dead letter (every given-up effect), or a type (optionally
 * received since a time); with `plugin`, only that plugin's.
 */
export interface ReplaySelect {
  eventId?: string
  /** with eventId: only this producer's event of that event_id (every producer's without it) */
  producer?: string
  dead?: boolean
  type?: string
  /** received_at in ms */
  since?: number
  plugin?: string
}

/** An effect given up (it threw PermanentError), as `cairn dead --effects` lists it: a dead letter's fields, given up when. */
export type GivenUpEffect = Omit<DeadLetter, 'dead_at'> & { gave_up_at: string }

/** What an effect of an event is doing, for saying why it cannot be replayed. */
export interface EffectState {
  plugin: string
  attempts: number
  /** it ran, or was given up */
  done: boolean
}

/** An effect whose (next) attempt is due. */
export interface DueEffect {
  plugin: string
  producer: string
  event_id: string
  attempts: number
}

/**
 * Counters, per database connection, of the writes after which an answer about plugin state that the host
 * keeps in memory must be asked again. Each counts every write that can make its answer lower (sooner); writes
 * that only raise it (a retry or effect that went, a replay done) leave it, so a kept answer is never later
 * than the table's but may be sooner, and is asked again once that time has passed. A rolled-back write has
 * counted too: the answer is asked again for nothing.
 */
export interface PluginWrites {
  /** plugin cursors and `events.state`: what the stream's watermark is made of */
  progress: number
  /** retries recorded (`plugin_failures` rows added or moved) */
  failures: number
  /** effects queued or moved */
  effects: number
  /** rebuilds and replays asked for (`plugin_replay` rows, the rebuild request in `meta`) */
  requests: number
}

const writesByDb = new WeakMap<SqlDatabase, PluginWrites>()

/** @returns the write counters of this connection, shared by every table object made on it */
export function pluginWrites(db: SqlDatabase): PluginWrites {
  let w = writesByDb.get(db)
  if (w == null) {
    w = { progress: 0, failures: 0, effects: 0, requests: 0 }
    writesByDb.set(db, w)
  }
  return w
}

/**
 * What the plugin host records per (plugin, event), the event named by (producer, event_id), in `plugin_migrations`, `plugin_cursors`,
 * `plugin_applied`, `plugin_failures`, `dead_letters`, `plugin_held`, `plugin_replay` and `plugin_effects`.
 * A plugin applies an event at most once: `plugin_applied` is written in the transaction of its writes.
 * Rows with producer '' date from before events were keyed by producer and name an event this node no
 * longer holds: they match no event, so no producer's later event_id is ever taken for them.
 */
export class PluginStateTable {
  private readonly db: SqlDatabase
  /** what was written on this connection since an answer was kept (see PluginWrites) */
  readonly writes: PluginWrites

  constructor(db: SqlDatabase) {
    this.db = db
    this.writes = pluginWrites(db)
  }

  /** @returns how many of a plugin's migrations have run */
  migrationVersion(plugin: string): number {
    return this.db.get<{ v: number | null }>('SELECT max(version) AS v FROM plugin_migrations WHERE plugin = ?', [plugin])?.v ?? 0
  }

  /**
   * @returns the digest of the text each of a plugin's migrations ran with, by number (null: it ran before
   * digests were recorded)
   */
  migrationDigests(plugin: string): Map<number, string | null> {
    const rows = this.db.all<{ version: number; digest: string | null }>('SELECT version, digest FROM plugin_migrations WHERE plugin = ? ORDER BY version', [plugin])
    return new Map(rows.map((r) => [r.version, r.digest]))
  }

  /** Records the digest of a plugin migration that ran before digests were recorded (one that has a digest keeps it). */
  recordMigrationDigest(plugin: string, version: number, digest: string): void {
    this.db.run('UPDATE plugin_migrations SET digest = ? WHERE plugin = ? AND version = ? AND digest IS NULL', [digest, plugin, version])
  }

  /** Runs a plugin's migration number `version` and records it with the digest of its text, in one transaction. */
  migrate(plugin: string, version: number, sql: string, digest: string, at: number): void {
    this.db.transaction(() => {
      this.db.exec(sql)
      this.db.run('INSERT INTO plugin_migrations (plugin, version, applied_at, digest) VALUES (?, ?, ?, ?)', [plugin, version, at, digest])
    })
  }

  /**
   * Drops a plugin's views and tables (as its migrations named them) in the connection's own schema, `main`,
   * never in an attached one (a rebuild's shadow), and forgets its migrations, for them to run again.
   */
  dropObjects(plugin: string, objects: { views: readonly string[]; tables: readonly string[] }): void {
    for (const view of objects.views) this.db.exec(`DROP VIEW IF EXISTS main.${quoteIdent(view)}`)
    for (const table of objects.tables) this.db.exec(`DROP TABLE IF EXISTS main.${quoteIdent(table)}`)
    this.db.run('DELETE FROM main.plugin_migrations WHERE plugin = ?', [plugin])
  }

  /**
   * Forgets everything a plugin built, for a rebuild: drops its views and tables and its migration records
   * (dropObjects), what it applied, its retries, dead letters, holds and queued replays, and puts its cursor
   * back to 0. Effects still due stay due. Call it inside the rebuild's transaction.
   */
  reset(plugin: string, objects: { views: readonly string[]; tables: readonly string[] }): void {
    this.dropObjects(plugin, objects)
    for (const table of ['plugin_applied', 'plugin_failures', 'dead_letters', 'plugin_held', 'plugin_replay']) {
      this.db.run(`DELETE FROM ${table} WHERE plugin = ?`, [plugin])
    }
    this.db.run('INSERT INTO plugin_cursors (plugin, cursor) VALUES (?, 0) ON CONFLICT (plugin) DO UPDATE SET cursor = 0', [plugin])
    this.writes.progress++
  }

  /**
   * Remembers, for a rebuild, the events a plugin is waiting on here (retrying, dead-lettered or held): it never
   * applied them, so no effect of theirs ran; queueWaitingEffects queues the effects of those the rebuilt tables
   * applied. Call it in the rebuild's transaction before the plugin's state is replaced.
   */
  rememberWaiting(plugin: string): void {
    this.db.exec('CREATE TEMP TABLE IF NOT EXISTS rebuild_waiting_before (producer TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (producer, event_id)) WITHOUT ROWID')
    this.db.run('DELETE FROM temp.rebuild_waiting_before')
    for (const table of ['plugin_failures', 'dead_letters', 'plugin_held']) {
      this.db.run(`INSERT OR IGNORE INTO temp.rebuild_waiting_before (producer, event_id) SELECT producer, event_id FROM main.${table} WHERE plugin = ?`, [plugin])
    }
  }

  /**
   * Queues the effects of the events of `types` that rememberWaiting found waiting and the plugin has now applied
   * (an effect already queued or run stays as it is), and forgets them.
   *
   * @returns how many were queued
   */
  queueWaitingEffects(plugin: string, types: readonly string[], at: number): number {
    let queued = 0
    if (types.length > 0) {
      queued = this.db.run(
        `INSERT OR IGNORE INTO main.plugin_effects (plugin, producer, event_id, next_at)
           SELECT a.plugin, a.producer, a.event_id, ? FROM temp.rebuild_waiting_before w
             JOIN main.plugin_applied a ON a.plugin = ? AND a.producer = w.producer AND a.event_id = w.event_id
             JOIN main.events e ON e.producer = w.producer AND e.event_id = w.event_id
            WHERE e.type IN (${types.map(() => '?').join(', ')})`,
        [at, plugin, ...types]
      ).changes
    }
    this.db.run('DELETE FROM temp.rebuild_waiting_before')
    if (queued > 0) this.writes.effects++
    return queued
  }

  /** @returns whether a plugin has ever run on this database (it has a cursor) */
  known(plugin: string): boolean {
    return this.db.get('SELECT 1 AS x FROM plugin_cursors WHERE plugin = ?', [plugin]) != null
  }

  /** @returns the plugins that have run on this database */
  knownPlugins(): string[] {
    return this.db.all<{ plugin: string }>('SELECT plugin FROM plugin_cursors ORDER BY plugin').map((r) => r.plugin)
  }

  /** Gives a plugin a cursor at 0 if it has none, so that it backfills every row. */
  ensureCursor(plugin: string): void {
    this.db.run('INSERT OR IGNORE INTO plugin_cursors (plugin, cursor) VALUES (?, 0)', [plugin])
    this.writes.progress++
  }

  /** Queues for replay the events of `type` held for a plugin whose version is at most `version`. */
  requeueHeld(plugin: string, type: string, version: number, at: number): void {
    this.db.run(
      `INSERT OR IGNORE INTO plugin_replay (plugin, producer, event_id, requested_at)
          SELECT h.plugin, h.producer, h.event_id, ? FROM plugin_held h JOIN events e ON e.producer = h.producer AND e.event_id = h.event_id WHERE h.plugin = ? AND e.type = ? AND e.version <= ?`,
      [at, plugin, type, version]
    )
    this.writes.requests++
  }

  /** @returns the cursor up to which a plugin has processed the events table */
  cursor(plugin: string): number {
    return this.db.get<{ cursor: number }>('SELECT cursor FROM plugin_cursors WHERE plugin = ?', [plugin])?.cursor ?? 0
  }

  /** Sets a plugin's cursor. */
  setCursor(plugin: string, cursor: number): void {
    this.db.run('UPDATE plugin_cursors SET cursor = ? WHERE plugin = ?', [cursor, plugin])
    this.writes.progress++
  }

  /** Moves a plugin's cursor to the highest cursor of the events table unless it is already there: past rows of types it does not read. */
  advanceToTop(plugin: string): void {
    this.db.run('UPDATE plugin_cursors SET cursor = (SELECT max(cursor) FROM events) WHERE plugin = ? AND cursor < (SELECT max(cursor) FROM events)', [plugin])
    this.writes.progress++
  }

  /**
   * Forgets which events a plugin applied and rewinds its cursor, so that it walks the table again (its
   * state was just replaced by a snapshot's; the events the snapshot reflects are passed over).
   */
  rewind(plugin: string): void {
    this.db.run('DELETE FROM plugin_applied WHERE plugin = ?', [plugin])
    this.db.run('UPDATE plugin_cursors SET cursor = 0 WHERE plugin = ?', [plugin])
    this.writes.progress++
  }

  /** Moves a plugin's cursor to `cursor` unless it is already past it. */
  advanceCursor(plugin: string, cursor: number): void {
    this.db.run('UPDATE plugin_cursors SET cursor = max(cursor, ?) WHERE plugin = ?', [cursor, plugin])
    this.writes.progress++
  }

  /** @returns the lowest cursor of these plugins: every one of them has processed the rows up to it */
  lowestCursor(plugins: readonly string[]): number {
    return this.db.get<{ c: number | null }>('SELECT min(cursor) AS c FROM plugin_cursors WHERE plugin IN (' + plugins.map(() => '?').join(',') + ')', plugins)?.c ?? 0
  }

  /** @returns whether a plugin has applied an event */
  isApplied(plugin: string, e: EventKey): boolean {
    return this.db.get('SELECT 1 AS x FROM plugin_applied WHERE plugin = ? AND event_id = ? AND producer = ? LIMIT 1', [plugin, e.event_id, e.producer]) != null
  }

  /**
   * Records that a plugin applied an event: clears its failure, dead letter and hold, and queues its effect.
   * Call it inside the transaction of the plugin's writes.
   */
  markApplied(plugin: string, e: EventKey, at: number, withEffect: boolean): void {
    const key = [plugin, e.producer, e.event_id]
    this.db.run('INSERT INTO plugin_applied (plugin, producer, event_id, applied_at) VALUES (?, ?, ?, ?)', [...key, at])
    this.db.run('DELETE FROM plugin_failures WHERE plugin = ? AND producer = ? AND event_id = ?', key)
    this.db.run('DELETE FROM dead_letters WHERE plugin = ? AND producer = ? AND event_id = ?', key)
    this.db.run('DELETE FROM plugin_held WHERE plugin = ? AND producer = ? AND event_id = ?', key)
    if (withEffect) {
      this.db.run('INSERT OR IGNORE INTO plugin_effects (plugin, producer, event_id, next_at) VALUES (?, ?, ?, ?)', [...key, at])
      this.writes.effects++
    }
  }

  /** @returns the plugins that applied any of `producer`'s events `eventIds`, by name */
  appliedBy(producer: string, eventIds: readonly string[]): string[] {
    const applied = new Set<string>()
    for (const id of eventIds) {
      for (const r of this.db.all<{ plugin: string }>('SELECT plugin FROM plugin_applied WHERE producer = ? AND event_id = ?', [producer, id])) applied.add(r.plugin)
    }
    return [...applied].sort()
  }

  /**
   * Forgets everything recorded of `producer`'s events `eventIds` (applied, retrying, dead-lettered, held, queued for
   * replay, effects): events no other node takes, withdrawn by cairn reclock.
   */
  forgetEvents(producer: string, eventIds: readonly string[]): void {
    for (const id of eventIds) {
      for (const table of ['plugin_applied', 'plugin_failures', 'dead_letters', 'plugin_held', 'plugin_replay', 'plugin_effects']) {
        this.db.run(`DELETE FROM ${table} WHERE producer = ? AND event_id = ?`, [producer, id])
      }
    }
    this.writes.progress++
    this.writes.failures++
    this.writes.effects++
    this.writes.requests++
  }

  /** Holds an event for a plugin until a version of it that knows the event's version is loaded. */
  hold(plugin: string, e: EventKey, version: number, at: number): void {
    this.db.run('INSERT OR IGNORE INTO plugin_held (plugin, producer, event_id, version, held_at) VALUES (?, ?, ?, ?, ?)', [plugin, e.producer, e.event_id, version, at])
  }

  /** @returns the events held because no plugin knows their version, in cursor order (the first `limit`, all without) */
  held(limit = -1): HeldEvent[] {
    return this.db.all('SELECT h.plugin, h.event_id, h.producer, e.type, h.version FROM plugin_held h JOIN events e ON e.producer = h.producer AND e.event_id = h.event_id ORDER BY e.cursor LIMIT ?', [
      limit
    ])
  }

  /** @returns the held events counted by plugin, type and version: which plugin holds which events */
  heldBy(): HeldGroup[] {
    return this.db.all<HeldGroup>(
      'SELECT h.plugin, e.type, h.version, count(*) AS count FROM plugin_held h JOIN events e ON e.producer = h.producer AND e.event_id = h.event_id GROUP BY h.plugin, e.type, h.version ORDER BY h.plugin, e.type, h.version LIMIT 100'
    )
  }

  /** @returns how many events a plugin has neither applied nor waits to retry: its dead letters and held events */
  unappliedCount(plugin: string): number {
    return this.db.get<{ n: number }>('SELECT (SELECT count(*) FROM dead_letters WHERE plugin = ?) + (SELECT count(*) FROM plugin_held WHERE plugin = ?) AS n', [plugin, plugin])?.n ?? 0
  }

  /** @returns how many (plugin, event) pairs are held */
  heldCount(): number {
    return this.db.get<{ n: number }>('SELECT count(*) AS n FROM plugin_held')?.n ?? 0
  }

  /** @returns a failed attempt's count and when the next may run, or undefined */
  failure(plugin: string, e: EventKey): { attempts: number; next_at: number } | undefined {
    return this.db.get<{ attempts: number; next_at: number }>('SELECT attempts, next_at FROM plugin_failures WHERE plugin = ? AND producer = ? AND event_id = ?', [plugin, e.producer, e.event_id])
  }

  /** Records a failed attempt and when the next may run: the event waits in the plugin's retry queue. */
  recordFailure(plugin: string, e: EventKey, attempts: number, error: string, nextAt: number): void {
    this.db.run(
      `INSERT INTO plugin_failures (plugin, producer, event_id, attempts, last_error, next_at) VALUES (?, ?, ?, ?, ?, ?)
              ON CONFLICT (plugin, producer, event_id) DO UPDATE SET attempts = excluded.attempts, last_error = excluded.last_error, next_at = excluded.next_at`,
      [plugin, e.producer, e.event_id, attempts, error, nextAt]
    )
    // A dead letter or held event replayed that fails again is retrying now, not both.
    this.db.run('DELETE FROM dead_letters WHERE plugin = ? AND producer = ? AND event_id = ?', [plugin, e.producer, e.event_id])
    this.db.run('DELETE FROM plugin_held WHERE plugin = ? AND producer = ? AND event_id = ?', [plugin, e.producer, e.event_id])
    this.writes.failures++
  }

  /** @returns when a plugin's next retry is due, or undefined when none waits */
  nextRetryAt(plugin: string): number | undefined {
    return (
      this.db.get<{ t: number | null }>('SELECT min(f.next_at) AS t FROM plugin_failures f JOIN events e ON e.producer = f.producer AND e.event_id = f.event_id WHERE f.plugin = ?', [plugin])?.t ??
      undefined
    )
  }

  /**
   * Forgets retries of events this node no longer holds (deleted by --events-retention, or named by rows from
   * before events were keyed by producer): nothing can run them, and a due one would keep the host busy.
   *
   * @returns how many were forgotten
   */
  forgetOrphanRetries(): number {
    return this.db.run('DELETE FROM plugin_failures WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.producer = plugin_failures.producer AND e.event_id = plugin_failures.event_id)').changes
  }

  /** @returns how many (plugin, event) pairs wait for a retry */
  retryingCount(): number {
    return this.db.get<{ n: number }>('SELECT count(*) AS n FROM plugin_failures')?.n ?? 0
  }

  /** Dead-letters an event for a plugin (replacing an older dead letter) and forgets its failures. */
  deadLetter(plugin: string, e: EventKey, attempts: number, error: string, at: number): void {
    this.db.run(
      `INSERT INTO dead_letters (plugin, producer, event_id, attempts, error, dead_at) VALUES (?, ?, ?, ?, ?, ?)
                  ON CONFLICT (plugin, producer, event_id) DO UPDATE SET attempts = excluded.attempts, error = excluded.error, dead_at = excluded.dead_at`,
      [plugin, e.producer, e.event_id, attempts, error, at]
    )
    this.db.run('DELETE FROM plugin_failures WHERE plugin = ? AND producer = ? AND event_id = ?', [plugin, e.producer, e.event_id])
    // A held event that a newer plugin version then could not apply is dead, no longer waiting for a version.
    this.db.run('DELETE FROM plugin_held WHERE plugin = ? AND producer = ? AND event_id = ?', [plugin, e.producer, e.event_id])
  }

  /** Removes a dead letter. */
  clearDeadLetter(plugin: string, e: EventKey): void {
    this.db.run('DELETE FROM dead_letters WHERE plugin = ? AND producer = ? AND event_id = ?', [plugin, e.producer, e.event_id])
  }

  /** @returns the dead letters, oldest first (the first `limit`, all without) */
  deadLetters(limit = -1): DeadLetter[] {
    return this.db
      .all<DeadLetter & { dead_at: number }>(
        `SELECT d.plugin, d.event_id, e.type, e.producer, e.seq, d.attempts, d.error, d.dead_at
    FROM dead_letters d JOIN events e ON e.producer = d.producer AND e.event_id = d.event_id ORDER BY d.dead_at LIMIT ?`,
        [limit]
      )
      .map((d) => ({ ...d, dead_at: new Date(d.dead_at).toISOString() }))
  }

  /** @returns how many dead letters there are */
  deadLetterCount(): number {
    return this.db.get<{ n: number }>('SELECT count(*) AS n FROM dead_letters')?.n ?? 0
  }

  /** @returns per plugin with dead letters, how many */
  deadLettersByPlugin(): Record<string, number> {
    const out: Record<string, number> = {}
    for (const r of this.db.all<{ plugin: string; n: number }>('SELECT plugin, count(*) AS n FROM dead_letters GROUP BY plugin ORDER BY plugin')) out[r.plugin] = r.n
    return out
  }

  /**
   * @returns the (plugin, event) pairs `select` names that are dead-lettered or held and not applied (every
   * dead letter with `dead`): what requestReplay queues
   */
  replayCandidates(select: ReplaySelect): Array<{ plugin: string; producer: string; event_id: string }> {
    if (select.dead === true) {
      return select.plugin != null
        ? this.db.all('SELECT plugin, producer, event_id FROM dead_letters WHERE plugin = ?', [select.plugin])
        : this.db.all('SELECT plugin, producer, event_id FROM dead_letters')
    }
    const where: string[] = []
    const params: Array<string | number> = []
    if (select.plugin != null) {
      where.push('c.plugin = ?')
      params.push(select.plugin)
    }
    eventConditions(select, where, params)
    return this.db.all(
      `SELECT c.plugin, e.producer, e.event_id FROM events e JOIN plugin_cursors c ON 1 = 1
      WHERE ${where.length > 0 ? where.join(' AND ') : '1 = 1'}
        AND NOT EXISTS (SELECT 1 FROM plugin_applied a WHERE a.plugin = c.plugin AND a.event_id = e.event_id AND a.producer = e.producer)
        AND (EXISTS (SELECT 1 FROM dead_letters d WHERE d.plugin = c.plugin AND d.producer = e.producer AND d.event_id = e.event_id)
          OR EXISTS (SELECT 1 FROM plugin_held h WHERE h.plugin = c.plugin AND h.producer = e.producer AND h.event_id = e.event_id))`,
      params
    )
  }

  /**
   * Queues for replay the (plugin, event) pairs `select` names (replayCandidates), and forgets their failures
   * so they run at once.
   *
   * @returns how many pairs were queued
   */
  requestReplay(select: ReplaySelect, at: number): number {
    const pairs = this.replayCandidates(select)
    this.db.transaction(() => {
      for (const p of pairs) {
        this.db.run('INSERT OR IGNORE INTO plugin_replay (plugin, producer, event_id, requested_at) VALUES (?, ?, ?, ?)', [p.plugin, p.producer, p.event_id, at])
        this.db.run('DELETE FROM plugin_failures WHERE plugin = ? AND producer = ? AND event_id = ?', [p.plugin, p.producer, p.event_id])
      }
    })
    this.writes.requests++
    return pairs.length
  }

  /**
   * Makes the given-up effects `select` names due again (`cairn replay --effects`; every given-up effect with
   * `dead`): not done, no attempt counted and due at `at`, so that each runs once more under the usual retry
   * policy (retried with backoff after a failure, given up again after a PermanentError). Only a given-up
   * effect is touched, in one statement: an effect that is due, retrying or done stays as it is, and a
   * second request before the effect ran again finds nothing to replay. The effect keeps its last error.
   *
   * @returns how many effects were made due
   */
  replayGivenUpEffects(select: ReplaySelect, at: number): number {
    const [where, params] = givenUpEffectsOf(select)
    const n = this.db.run(`UPDATE plugin_effects SET done_at = NULL, gave_up_at = NULL, attempts = 0, next_at = ? WHERE ${where}`, [at, ...params]).changes
    if (n > 0) this.writes.effects++
    return n
  }

  /** @returns how many given-up effects `select` names: what replayGivenUpEffects makes due */
  givenUpEffectsCount(select: ReplaySelect): number {
    const [where, params] = givenUpEffectsOf(select)
    return this.db.get<{ n: number }>(`SELECT count(*) AS n FROM plugin_effects WHERE ${where}`, params)?.n ?? 0
  }

  /** @returns the effects of an event (of one producer's with `producer`, of one plugin's with `plugin`), for saying why none can be replayed */
  effectsOf(eventId: string, producer?: string, plugin?: string): EffectState[] {
    return this.db
      .all<{ plugin: string; attempts: number; done_at: number | null }>(
        `SELECT plugin, attempts, done_at FROM plugin_effects WHERE event_id = ?${producer != null ? ' AND producer = ?' : ''}${plugin != null ? ' AND plugin = ?' : ''} ORDER BY plugin`,
        [eventId, ...(producer != null ? [producer] : []), ...(plugin != null ? [plugin] : [])]
      )
      .map((r) => ({ plugin: r.plugin, attempts: r.attempts, done: r.done_at != null }))
  }

  /** @returns the given-up effects, oldest first (the first `limit`, all without) */
  givenUpEffects(limit = -1): GivenUpEffect[] {
    return this.db
      .all<GivenUpEffect & { gave_up_at: number; error: string | null }>(
        `SELECT f.plugin, f.event_id, e.type, e.producer, e.seq, f.attempts, f.last_error AS error, f.gave_up_at
    FROM plugin_effects f JOIN events e ON e.producer = f.producer AND e.event_id = f.event_id WHERE f.gave_up_at IS NOT NULL ORDER BY f.gave_up_at LIMIT ?`,
        [limit]
      )
      .map((f) => ({ ...f, error: f.error ?? '', gave_up_at: new Date(f.gave_up_at).toISOString() }))
  }

  /** Takes an event off a plugin's replay queue. */
  unqueueReplay(plugin: string, e: EventKey): void {
    this.db.run('DELETE FROM plugin_replay WHERE plugin = ? AND producer = ? AND event_id = ?', [plugin, e.producer, e.event_id])
  }

  /**
   * @param plugins the plugins whose effects can run (a plugin no longer loaded keeps its effects for when it is back)
   * @returns up to 100 of their effects not done whose next attempt is due at `now`, soonest first
   */
  dueEffects(now: number, plugins: readonly string[]): DueEffect[] {
    if (plugins.length === 0) return []
    return this.db.all<DueEffect>(
      `SELECT plugin, producer, event_id, attempts FROM plugin_effects WHERE done_at IS NULL AND next_at <= ? AND plugin IN (${plugins.map(() => '?').join(', ')}) ORDER BY next_at LIMIT 100`,
      [now, ...plugins]
    )
  }

  /** @returns when the next effect of `plugins` not done is due, or undefined when none is waiting */
  nextEffectAt(plugins: readonly string[]): number | undefined {
    if (plugins.length === 0) return undefined
    return this.db.get<{ t: number | null }>(`SELECT min(next_at) AS t FROM plugin_effects WHERE done_at IS NULL AND plugin IN (${plugins.map(() => '?').join(', ')})`, [...plugins])?.t ?? undefined
  }

  /** Records that an effect ran, after `attempts` attempts. */
  effectDone(plugin: string, e: EventKey, attempts: number, at: number): void {
    this.db.run('UPDATE plugin_effects SET done_at = ?, attempts = ? WHERE plugin = ? AND producer = ? AND event_id = ?', [at, attempts, plugin, e.producer, e.event_id])
    this.writes.effects++
  }

  /** Gives an effect up for good (it threw PermanentError): done, with its error and when it gave up. */
  effectGaveUp(plugin: string, e: EventKey, attempts: number, error: string, at: number): void {
    this.db.run('UPDATE plugin_effects SET done_at = ?, gave_up_at = ?, attempts = ?, last_error = ? WHERE plugin = ? AND producer = ? AND event_id = ?', [
      at,
      at,
      attempts,
      error,
      plugin,
      e.producer,
      e.event_id
    ])
    this.writes.effects++
  }

  /**
   * Forgets the effects that ran or were given up of events no longer in the events table (events-retention
   * deleted them): they can never run again, and a given-up one could be neither listed nor replayed.
   *
   * @returns how many went
   */
  forgetEffectsOfGoneEvents(): number {
    const n = this.db.run(
      `DELETE FROM plugin_effects WHERE done_at IS NOT NULL
         AND NOT EXISTS (SELECT 1 FROM events e WHERE e.producer = plugin_effects.producer AND e.event_id = plugin_effects.event_id)`
    ).changes
    if (n > 0) this.writes.effects++
    return n
  }

  /** @returns how many effects are waiting for a retry after a failure, and how many were given up (PermanentError) */
  effectCounts(): { failing: number; gaveUp: number } {
    const r = this.db.get<{ failing: number; gave_up: number }>(
      `SELECT (SELECT count(*) FROM plugin_effects WHERE done_at IS NULL AND attempts > 0) AS failing,
              (SELECT count(*) FROM plugin_effects WHERE gave_up_at IS NOT NULL) AS gave_up`
    )
    return { failing: r?.failing ?? 0, gaveUp: r?.gave_up ?? 0 }
  }

  /** Records a failed attempt of an effect and when the next may run. */
  effectFailed(plugin: string, e: EventKey, attempts: number, error: string, nextAt: number): void {
    this.db.run('UPDATE plugin_effects SET attempts = ?, last_error = ?, next_at = ? WHERE plugin = ? AND producer = ? AND event_id = ?', [attempts, error, nextAt, plugin, e.producer, e.event_id])
    this.writes.effects++
  }
}

/** Adds the conditions on the event (alias `e`) that a replay's selection names: its id, producer, type and time. */
function eventConditions(select: ReplaySelect, where: string[], params: Array<string | number>): void {
  if (select.eventId != null) {
    where.push('e.event_id = ?')
    params.push(select.eventId)
  }
  if (select.producer != null) {
    where.push('e.producer = ?')
    params.push(select.producer)
  }
  if (select.type != null) {
    where.push('e.type = ?')
    params.push(select.type)
  }
  if (select.since != null) {
    where.push('e.received_at >= ?')
    params.push(select.since)
  }
}

/** @returns the condition on plugin_effects (and its parameters) naming the given-up effects `select` names */
function givenUpEffectsOf(select: ReplaySelect): [string, Array<string | number>] {
  const where: string[] = []
  const params: Array<string | number> = []
  if (select.plugin != null) {
    where.push('plugin_effects.plugin = ?')
    params.push(select.plugin)
  }
  if (select.dead !== true) eventConditions(select, where, params)
  return [
    `gave_up_at IS NOT NULL AND EXISTS (SELECT 1 FROM events e WHERE e.producer = plugin_effects.producer AND e.event_id = plugin_effects.event_id${where.map((w) => ` AND ${w}`).join('')})`,
    params
  ]
}
