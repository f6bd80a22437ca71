import type * as v from 'valibot'
import type { EventEnvelope } from '../model/envelope.ts'
import type { PublishRequest, PublishResult } from '../model/publishRequest.ts'
import type { Log } from '../log/logger.ts'

/** A SQL value a plugin binds. */
export type PluginSqlValue = string | number | bigint | null | Uint8Array | boolean

/** The database as a plugin sees it: inside `apply`, every call is part of the event's transaction. */
export interface PluginDb {
  run(sql: string, params?: readonly PluginSqlValue[]): { changes: number }
  get<T = Record<string, unknown>>(sql: string, params?: readonly PluginSqlValue[]): T | undefined
  all<T = Record<string, unknown>>(sql: string, params?: readonly PluginSqlValue[]): T[]
}

/** An event as a plugin receives it: the envelope, with the payload validated (and upcast to the current version). */
export type PluginEvent<P = unknown> = Omit<EventEnvelope, 'payload'> & { payload: P }

/** What `apply` gets: synchronous, inside the transaction that also records "this plugin applied this event". */
export interface ApplyContext {
  db: PluginDb
  log: Log
  signal: AbortSignal
  /** the plugin's name */
  plugin: string
}

/** What `effect` gets: it runs after `apply` committed, at least once, with `event.event_id` as the idempotency key. */
export interface EffectContext extends ApplyContext {
  /** publishes a follow-up event from this node */
  publish: (request: PublishRequest) => Promise<PublishResult>
}

/** A state key: a string, or a tuple of strings and numbers (compared by its JSON). */
export type StateKey = string | ReadonlyArray<string | number>

/** The most state keys one event may write; more is a plugin bug, and the event is not applied. */
export const MAX_KEYS_PER_EVENT = 1000

/** How a plugin handles one event type: its current version and payload schema, and how older versions upcast. */
export interface TypeHandler<S extends v.GenericSchema = v.GenericSchema> {
  version: number
  payload: S
  /** older versions: their payload schema and a function from that payload to the current one */
  // biome-ignore lint/suspicious/noExplicitAny: an upcaster takes its old schema's output, which this untyped record cannot name
  upcast?: Record<number, { payload: v.GenericSchema; to: (payload: any) => unknown }>
  /**
   * The state keys an event of this type writes (keyed compaction, docs/plugins.md): the newest event per key,
   * in the order (hlc, producer, event_id), must alone decide that key's state. Housekeeping then prunes an
   * event once every key it writes has a newer event; without `keys`, events of this type keep plain retention.
   * It must be a pure function of the (validated, upcast) payload.
   */
  keys?(payload: v.InferOutput<S>): readonly StateKey[]
}

/** A cairn plugin. */
export interface Plugin {
  /** appears in every log line and error; unique among loaded plugins */
  name: string
  /** the plugin's own version, for `cairn plugins` */
  version?: string
  handles: Record<string, TypeHandler>
  /** SQL run once each, in order, and recorded */
  migrations?: string[]
  /**
   * `false` opts out of signed snapshots: its tables are never published, and on a node that joined late its
   * state starts at the retention horizon (status says so)
   */
  snapshot?: false
  // biome-ignore lint/suspicious/noExplicitAny: the payload's type depends on the event's type, which one handler signature cannot name
  apply: (event: PluginEvent<any>, ctx: ApplyContext) => void
  // biome-ignore lint/suspicious/noExplicitAny: as for apply
  effect?: (event: PluginEvent<any>, ctx: EffectContext) => Promise<void>
}

/**
 * Declares a plugin; it only returns its argument, so that TypeScript checks it.
 *
 * @example
 * ```ts
 * export default definePlugin({
 *   name: 'apply-counter',
 *   handles: { 'workspace.invited': { version: 1, payload: v.unknown() } },
 *   migrations: ['CREATE TABLE apply_counter (event_id TEXT PRIMARY KEY, n INTEGER NOT NULL)'],
 *   apply (event, { db }) { db.run('INSERT INTO apply_counter VALUES (?, 1)', [event.event_id]) }
 * })
 * ```
 */
export function definePlugin<P extends Plugin>(plugin: P): P {
  return plugin
}

/** A loaded plugin and where it came from (a file, or 'built-in'). */
export interface LoadedPlugin {
  plugin: Plugin
  source: string
}
