import * as v from 'valibot'
import { toJsonSchema } from '@valibot/to-json-schema'
import type { SqlDatabase } from '../runtime/sqlite.ts'
import { rowToEnvelope, type EventRow } from '../store/events.ts'
import type { PublishRequest, PublishResult } from '../model/publishRequest.ts'
import { formatIssues } from '../model/issues.ts'
import { silentLog, type Log } from '../log/logger.ts'
import type { LoadedPlugin } from './load.ts'
import { PermanentError, PluginLoadError, ValidationError } from '../errors.ts'
import type { Plugin, PluginEvent } from './types.ts'
import { trace } from '../log/trace.ts'

export interface PluginHostInit {
  db: SqlDatabase
  plugins: readonly LoadedPlugin[]
  log?: Log
  /** attempts before an event is dead-lettered for a plugin (default 5) */
  maxAttempts?: number
  /** the first retry's delay; each further one doubles it (default 200 ms) */
  backoffMs?: number
  /** lets `effect` publish follow-up events */
  publish?: (request: PublishRequest) => Promise<PublishResult>
  /** called after a plugin applied an event, with how long apply took */
  onApplied?: (plugin: string, event: PluginEvent, ms: number) => void
  /** called after a processing round moved the watermark */
  onProgress?: () => void
  now?: () => number
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

/**
 * Runs plugins against the events table, exactly once per (plugin, event): a plugin's writes and the record
 * that it applied the event commit in one transaction. Each plugin walks the table in cursor order from its
 * own cursor, so a plugin added later backfills everything already there.
 */
export class PluginHost {
  private readonly init: PluginHostInit
  private readonly db: SqlDatabase
  private readonly log: Log
  status: 'stopped' | 'started' = 'stopped'
  private scheduled: { cancel: () => void } | undefined
  private running: Promise<void> | undefined
  private again = false
  private readonly abort = new AbortController()

  constructor (init: PluginHostInit) {
    this.init = init
    this.db = init.db
    this.log = init.log ?? silentLog
  }

  get plugins (): Plugin[] {
    return this.init.plugins.map((p) => p.plugin)
  }

  /**
   * Applies each plugin's migrations that have not run, each in a transaction, then processes the backlog.
   *
   * @throws PluginLoadError naming the plugin, its file and the failing migration
   */
  async start (): Promise<void> {
    if (this.status === 'started') return
    this.migrate()
    this.status = 'started'
    this.notify()
  }

  /** Stops processing; waits for a round under way. */
  async stop (): Promise<void> {
    if (this.status === 'stopped') return
    this.status = 'stopped'
    this.abort.abort()
    this.scheduled?.cancel()
    this.scheduled = undefined
    await this.running
  }

  private migrate (): void {
    for (const { plugin, source } of this.init.plugins) {
      const done = this.db.get<{ v: number | null }>('SELECT max(version) AS v FROM plugin_migrations WHERE plugin = ?', [plugin.name])?.v ?? 0
      const migrations = plugin.migrations ?? []
      for (let i = done; i < migrations.length; i++) {
        try {
          this.db.transaction(() => {
            this.db.exec(migrations[i])
            this.db.run('INSERT INTO plugin_migrations (plugin, version, applied_at) VALUES (?, ?, ?)', [plugin.name, i + 1, Date.now()])
          })
        } catch (err) {
          throw new PluginLoadError(`Cannot start plugin "${plugin.name}" from ${source}: migration ${i + 1} failed: ${(err as Error).message}`)
        }
      }
      this.db.run('INSERT OR IGNORE INTO plugin_cursors (plugin, cursor) VALUES (?, 0)', [plugin.name])
      // Events held for a version this plugin now knows run again.
      for (const [type, handler] of Object.entries(plugin.handles)) {
        this.db.run(`INSERT OR IGNORE INTO plugin_replay (plugin, event_id, requested_at)
          SELECT h.plugin, h.event_id, ? FROM plugin_held h JOIN events e ON e.event_id = h.event_id WHERE h.plugin = ? AND e.type = ? AND e.version <= ?`,
        [Date.now(), plugin.name, type, handler.version])
      }
    }
  }

  /** Schedules a processing round soon; calls coalesce. */
  notify (delay = 0): void {
    if (this.status !== 'started') return
    if (this.running != null) { this.again = true; return }
    if (this.scheduled != null) return
    const run = (): void => {
      this.scheduled = undefined
      this.running = this.round().finally(() => {
        this.running = undefined
        if (this.again) { this.again = false; this.notify() }
      })
    }
    // setTimeout(fn, 0) waits at least a millisecond, on every hop of an event: run next turn instead.
    if (delay <= 0) {
      const immediate = setImmediate(run)
      this.scheduled = { cancel: () => { clearImmediate(immediate) } }
    } else {
      const timer = setTimeout(run, delay)
      this.scheduled = { cancel: () => { clearTimeout(timer) } }
    }
  }

  /** Processes until every plugin is blocked or done; resolves when the host is idle. */
  async drain (): Promise<void> {
    while (this.running != null || this.scheduled != null) await (this.running ?? new Promise((resolve) => setTimeout(resolve, 5)))
  }

  private async round (): Promise<void> {
    trace('plugins.round')
    let retryAt = Infinity
    for (const { plugin } of this.init.plugins) {
      if (this.status !== 'started') return
      retryAt = Math.min(retryAt, this.replayQueue(plugin), this.process(plugin))
    }
    this.markDone()
    trace('plugins.round_done')
    this.init.onProgress?.()
    await this.runEffects()
    const effectsDue = this.db.get<{ t: number | null }>('SELECT min(next_at) AS t FROM plugin_effects WHERE done_at IS NULL')?.t
    retryAt = Math.min(retryAt, effectsDue ?? Infinity)
    if (retryAt !== Infinity && this.status === 'started') this.notify(Math.max(10, retryAt - this.now()))
  }

  private now (): number {
    return this.init.now?.() ?? Date.now()
  }

  private types (plugin: Plugin): string[] {
    return Object.keys(plugin.handles)
  }

  /**
   * Walks one plugin forward from its cursor.
   *
   * @returns when to try again (a retry waiting), or Infinity
   */
  private process (plugin: Plugin): number {
    const types = this.types(plugin)
    const marks = types.map(() => '?').join(',')
    for (;;) {
      const cursor = this.db.get<{ cursor: number }>('SELECT cursor FROM plugin_cursors WHERE plugin = ?', [plugin.name])?.cursor ?? 0
      const rows = this.db.all<EventRow>(`SELECT * FROM events WHERE cursor > ? AND type IN (${marks}) ORDER BY cursor LIMIT 200`, [cursor, ...types])
      if (rows.length === 0) {
        const top = this.db.get<{ c: number | null }>('SELECT max(cursor) AS c FROM events')?.c ?? 0
        if (top > cursor) this.db.run('UPDATE plugin_cursors SET cursor = ? WHERE plugin = ?', [top, plugin.name])
        return Infinity
      }
      for (const row of rows) {
        const wait = this.applyOne(plugin, row, true)
        if (wait != null) return wait
      }
    }
  }

  /** Re-runs the replay requests for a plugin. @returns when to try again, or Infinity */
  private replayQueue (plugin: Plugin): number {
    const queued = this.db.all<EventRow>('SELECT e.* FROM plugin_replay r JOIN events e ON e.event_id = r.event_id WHERE r.plugin = ? ORDER BY e.cursor', [plugin.name])
    for (const row of queued) {
      const wait = this.applyOne(plugin, row, false)
      if (wait != null) return wait
      this.db.run('DELETE FROM plugin_replay WHERE plugin = ? AND event_id = ?', [plugin.name, row.event_id])
    }
    return Infinity
  }

  /**
   * Applies one event for one plugin, once.
   *
   * @param advance whether this moves the plugin's cursor (false for replays)
   * @returns undefined when done with the row (applied, dead, held, skipped), or when to retry it
   */
  private applyOne (plugin: Plugin, row: EventRow, advance: boolean): number | undefined {
    const { db } = this
    const moveCursor = (): void => { if (advance) db.run('UPDATE plugin_cursors SET cursor = max(cursor, ?) WHERE plugin = ?', [row.cursor, plugin.name]) }
    if (db.get('SELECT 1 AS x FROM plugin_applied WHERE plugin = ? AND event_id = ?', [plugin.name, row.event_id]) != null) {
      db.transaction(() => { moveCursor(); db.run('DELETE FROM dead_letters WHERE plugin = ? AND event_id = ?', [plugin.name, row.event_id]) })
      return undefined
    }
    const handler = plugin.handles[row.type]
    if (row.version > handler.version) {
      // A newer version than this plugin knows: held, not dropped, until a plugin that knows it is loaded.
      db.transaction(() => {
        db.run('INSERT OR IGNORE INTO plugin_held (plugin, event_id, version, held_at) VALUES (?, ?, ?, ?)', [plugin.name, row.event_id, row.version, this.now()])
        moveCursor()
      })
      return undefined
    }
    const failure = db.get<{ attempts: number, next_at: number }>('SELECT attempts, next_at FROM plugin_failures WHERE plugin = ? AND event_id = ?', [plugin.name, row.event_id])
    if (failure != null && failure.next_at > this.now()) return failure.next_at
    const attempts = (failure?.attempts ?? 0) + 1
    const log = this.log.child({ plugin: plugin.name, event_id: row.event_id, producer: row.producer })
    let event: PluginEvent
    const started = performance.now()
    try {
      event = { ...rowToEnvelope(row), payload: this.payloadFor(handler, row) }
      db.transaction(() => {
        plugin.apply(event, { db: this.pluginDb(), log, signal: this.abort.signal, plugin: plugin.name })
        db.run('INSERT INTO plugin_applied (plugin, event_id, applied_at) VALUES (?, ?, ?)', [plugin.name, row.event_id, this.now()])
        db.run('DELETE FROM plugin_failures WHERE plugin = ? AND event_id = ?', [plugin.name, row.event_id])
        db.run('DELETE FROM dead_letters WHERE plugin = ? AND event_id = ?', [plugin.name, row.event_id])
        db.run('DELETE FROM plugin_held WHERE plugin = ? AND event_id = ?', [plugin.name, row.event_id])
        if (plugin.effect != null) db.run('INSERT OR IGNORE INTO plugin_effects (plugin, event_id, next_at) VALUES (?, ?, ?)', [plugin.name, row.event_id, this.now()])
        moveCursor()
      })
    } catch (err) {
      const message = (err as Error).message
      const permanent = (err as Error).name === 'PermanentError'
      if (permanent || attempts >= (this.init.maxAttempts ?? 5)) {
        db.transaction(() => {
          db.run(`INSERT INTO dead_letters (plugin, event_id, attempts, error, dead_at) VALUES (?, ?, ?, ?, ?)
                  ON CONFLICT (plugin, event_id) DO UPDATE SET attempts = excluded.attempts, error = excluded.error, dead_at = excluded.dead_at`,
          [plugin.name, row.event_id, attempts, message, this.now()])
          db.run('DELETE FROM plugin_failures WHERE plugin = ? AND event_id = ?', [plugin.name, row.event_id])
          moveCursor()
        })
        log.warn(`dead-lettered after ${attempts} attempt(s): ${message}`)
        return undefined
      }
      const nextAt = this.now() + (this.init.backoffMs ?? 200) * 2 ** (attempts - 1)
      db.run(`INSERT INTO plugin_failures (plugin, event_id, attempts, last_error, next_at) VALUES (?, ?, ?, ?, ?)
              ON CONFLICT (plugin, event_id) DO UPDATE SET attempts = excluded.attempts, last_error = excluded.last_error, next_at = excluded.next_at`,
      [plugin.name, row.event_id, attempts, message, nextAt])
      log.debug(`apply failed (attempt ${attempts}), retrying: ${message}`)
      return nextAt
    }
    this.init.onApplied?.(plugin.name, event, performance.now() - started)
    return undefined
  }

  /** @returns the payload validated against the handler's schema, upcast from an older version if needed */
  private payloadFor (handler: Plugin['handles'][string], row: EventRow): unknown {
    let payload: unknown = JSON.parse(row.payload)
    if (row.version < handler.version) {
      const up = handler.upcast?.[row.version]
      if (up == null) throw new PermanentError(`no upcaster from version ${row.version} to ${handler.version} of ${row.type}`)
      const old = v.safeParse(up.payload, payload)
      if (!old.success) throw new PermanentError(`payload of ${row.type} v${row.version} is invalid: ${formatIssues(old.issues, 'payload').join('; ')}`)
      payload = up.to(old.output)
    }
    const r = v.safeParse(handler.payload, payload)
    if (!r.success) throw new PermanentError(`payload of ${row.type} v${handler.version} is invalid: ${formatIssues(r.issues, 'payload').join('; ')}`)
    return r.output
  }

  private pluginDb (): { run: SqlDatabase['run'], get: SqlDatabase['get'], all: SqlDatabase['all'] } {
    return { run: (sql, params) => this.db.run(sql, params), get: (sql, params) => this.db.get(sql, params), all: (sql, params) => this.db.all(sql, params) }
  }

  /** Marks rows every plugin has passed as done. */
  private markDone (): void {
    this.db.run("UPDATE events SET state = 'done' WHERE state = 'pending' AND cursor <= ?", [this.watermark()])
  }

  /** @returns the highest cursor that every plugin has processed (applied, dead-lettered, held or skipped) */
  watermark (): number {
    if (this.init.plugins.length === 0 || this.status !== 'started') {
      return this.init.plugins.length === 0 ? (this.db.get<{ c: number | null }>('SELECT max(cursor) AS c FROM events')?.c ?? 0) : 0
    }
    return this.db.get<{ c: number | null }>('SELECT min(cursor) AS c FROM plugin_cursors WHERE plugin IN (' + this.init.plugins.map(() => '?').join(',') + ')', this.init.plugins.map((p) => p.plugin.name))?.c ?? 0
  }

  private async runEffects (): Promise<void> {
    const due = this.db.all<{ plugin: string, event_id: string, attempts: number }>('SELECT plugin, event_id, attempts FROM plugin_effects WHERE done_at IS NULL AND next_at <= ? ORDER BY next_at LIMIT 100', [this.now()])
    for (const d of due) {
      const plugin = this.init.plugins.find((p) => p.plugin.name === d.plugin)?.plugin
      const row = this.db.get<EventRow>('SELECT * FROM events WHERE event_id = ?', [d.event_id])
      if (plugin?.effect == null || row == null) continue
      const log = this.log.child({ plugin: plugin.name, event_id: row.event_id, producer: row.producer })
      try {
        const event = { ...rowToEnvelope(row), payload: this.payloadFor(plugin.handles[row.type], row) }
        await plugin.effect(event, {
          db: this.pluginDb(), log, signal: this.abort.signal, plugin: plugin.name,
          publish: async (r) => { if (this.init.publish == null) throw new Error('this host cannot publish'); return await this.init.publish(r) }
        })
        this.db.run('UPDATE plugin_effects SET done_at = ?, attempts = ? WHERE plugin = ? AND event_id = ?', [this.now(), d.attempts + 1, d.plugin, d.event_id])
      } catch (err) {
        const delay = Math.min(60_000, (this.init.backoffMs ?? 200) * 2 ** d.attempts)
        this.db.run('UPDATE plugin_effects SET attempts = ?, last_error = ?, next_at = ? WHERE plugin = ? AND event_id = ?', [d.attempts + 1, (err as Error).message, this.now() + delay, d.plugin, d.event_id])
        log.warn(`effect failed (attempt ${d.attempts + 1}), retrying in ${delay} ms: ${(err as Error).message}`)
      }
    }
  }

  /**
   * Checks a payload about to be published against the local plugin that declares its type.
   *
   * @returns the version to publish (given, or the newest declared, else 1) and `payload.…: message` issues
   */
  validatePublish (type: string, version: number | undefined, payload: unknown): { version: number, issues: string[] } {
    const handler = this.plugins.map((p) => p.handles[type]).find((h) => h != null)
    if (handler == null) return { version: version ?? 1, issues: [] }
    const chosen = version ?? handler.version
    if (chosen > handler.version) return { version: chosen, issues: [] }
    const schema = chosen === handler.version ? handler.payload : handler.upcast?.[chosen]?.payload
    if (schema == null) return { version: chosen, issues: [`version: no local plugin reads ${type} v${chosen}`] }
    const r = v.safeParse(schema, payload)
    return { version: chosen, issues: r.success ? [] : formatIssues(r.issues, 'payload') }
  }

  /** @returns the loaded plugins with their types, versions, source and the tables their migrations create */
  listPlugins (): Array<{ name: string, version?: string, source: string, types: Record<string, number[]>, tables: string[] }> {
    return this.init.plugins.map(({ plugin, source }) => ({
      name: plugin.name,
      version: plugin.version,
      source,
      types: Object.fromEntries(Object.entries(plugin.handles).map(([t, h]) => [t, [...Object.keys(h.upcast ?? {}).map(Number), h.version].sort((a, b) => a - b)])),
      tables: tablesOf(plugin)
    }))
  }

  /** @returns the events held because no plugin knows their version, by plugin */
  held (): Array<{ plugin: string, event_id: string, type: string, version: number }> {
    return this.db.all('SELECT h.plugin, h.event_id, e.type, h.version FROM plugin_held h JOIN events e ON e.event_id = h.event_id ORDER BY e.cursor')
  }

  /** @returns the payload's JSON Schema for a type, from the plugin that declares it */
  jsonSchema (type: string, version?: number): object {
    return jsonSchemaOf(this.plugins, type, version)
  }
}

/** @returns the table names a plugin's migrations create */
export function tablesOf (plugin: Plugin): string[] {
  const names = new Set<string>()
  for (const sql of plugin.migrations ?? []) {
    for (const m of sql.matchAll(/CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?["`[]?([A-Za-z_][A-Za-z0-9_]*)/gi)) names.add(m[1])
  }
  return [...names]
}

/**
 * @returns the JSON Schema of a type's payload, at `version` (default: the newest a plugin declares)
 * @throws ValidationError when no plugin declares that type or version
 */
export function jsonSchemaOf (plugins: readonly Plugin[], type: string, version?: number): object {
  const handler = plugins.map((p) => p.handles[type]).find((h) => h != null)
  if (handler == null) throw new ValidationError(`No loaded plugin declares the event type ${type}`)
  const schema = version == null || version === handler.version ? handler.payload : handler.upcast?.[version]?.payload
  if (schema == null) throw new ValidationError(`No loaded plugin declares version ${version} of ${type} (known: ${[...Object.keys(handler.upcast ?? {}), handler.version].join(', ')})`)
  return toJsonSchema(schema, { errorMode: 'ignore' })
}

/** @returns the dead letters in the database */
export function listDeadLetters (db: SqlDatabase): DeadLetter[] {
  return db.all<DeadLetter & { dead_at: number }>(`SELECT d.plugin, d.event_id, e.type, e.producer, e.seq, d.attempts, d.error, d.dead_at
    FROM dead_letters d JOIN events e ON e.event_id = d.event_id ORDER BY d.dead_at`).map((d) => ({ ...d, dead_at: new Date(d.dead_at).toISOString() }))
}

/**
 * Queues events to run through their plugins again. An event a plugin already applied is never applied
 * twice: replay re-runs what is dead-lettered or held, or was never applied.
 *
 * @returns how many (plugin, event) pairs were queued
 */
export function requestReplay (db: SqlDatabase, select: { eventId?: string, dead?: boolean, type?: string, since?: number }): number {
  let pairs: Array<{ plugin: string, event_id: string }>
  if (select.dead === true) {
    pairs = db.all('SELECT plugin, event_id FROM dead_letters')
  } else {
    const where: string[] = []
    const params: Array<string | number> = []
    if (select.eventId != null) { where.push('e.event_id = ?'); params.push(select.eventId) }
    if (select.type != null) { where.push('e.type = ?'); params.push(select.type) }
    if (select.since != null) { where.push('e.received_at >= ?'); params.push(select.since) }
    pairs = db.all(`SELECT c.plugin, e.event_id FROM events e JOIN plugin_cursors c ON 1 = 1
      WHERE ${where.length > 0 ? where.join(' AND ') : '1 = 1'}
        AND NOT EXISTS (SELECT 1 FROM plugin_applied a WHERE a.plugin = c.plugin AND a.event_id = e.event_id)
        AND (EXISTS (SELECT 1 FROM dead_letters d WHERE d.plugin = c.plugin AND d.event_id = e.event_id)
          OR EXISTS (SELECT 1 FROM plugin_held h WHERE h.plugin = c.plugin AND h.event_id = e.event_id))`, params)
  }
  db.transaction(() => {
    for (const p of pairs) {
      db.run('INSERT OR IGNORE INTO plugin_replay (plugin, event_id, requested_at) VALUES (?, ?, ?)', [p.plugin, p.event_id, Date.now()])
      db.run('DELETE FROM plugin_failures WHERE plugin = ? AND event_id = ?', [p.plugin, p.event_id])
    }
  })
  return pairs.length
}
