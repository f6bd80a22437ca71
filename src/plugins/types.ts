import type * as v from 'valibot'
import type { EventEnvelope } from '../model/envelope.ts'
import type { PublishRequest, PublishResult } from '../model/publishRequest.ts'

/** A SQL value a plugin binds. */
export type PluginSqlValue = string | number | bigint | null | Uint8Array | boolean

/** The database as a plugin sees it: inside `apply`, every call is part of the event's transaction. */
export interface PluginDb {
  run(sql: string, params?: readonly PluginSqlValue[]): { changes: number }
  get<T = Record<string, unknown>>(sql: string, params?: readonly PluginSqlValue[]): T | undefined
  all<T = Record<string, unknown>>(sql: string, params?: readonly PluginSqlValue[]): T[]
}

/**
 * A structured logger: the message first, then fields (unlike pino, whose fields come first). The plugin's
 * name, the event_id and the producer are already bound.
 */
export interface PluginLog {
  debug(msg: string, fields?: Record<string, unknown>): void
  info(msg: string, fields?: Record<string, unknown>): void
  warn(msg: string, fields?: Record<string, unknown>): void
  error(msg: string, fields?: Record<string, unknown>): void
}

/** An event as a plugin receives it: the envelope, with the payload validated (and upcast to the current version). */
export type PluginEvent<P = unknown, T extends string = string> = Omit<EventEnvelope, 'payload' | 'type'> & { type: T; payload: P }

/** What `apply` gets: synchronous, inside the transaction that also records "this plugin applied this event". */
export interface ApplyContext {
  db: PluginDb
  log: PluginLog
  signal: AbortSignal
  /** the plugin's name */
  plugin: string
}

/** Reads the node's database: what an effect gets, since its writes would repeat with its retries. */
export type PluginDbReader = Pick<PluginDb, 'get' | 'all'>

/**
 * What `effect` gets: it runs after `apply` committed, at least once, with `event.event_id` as the idempotency
 * key, on every node that runs the plugin (act once in the network by acting where `event.producer === ctx.self`).
 */
export interface EffectContext extends Omit<ApplyContext, 'db'> {
  /** reads the database; any write is refused (write in apply, which runs exactly once) */
  db: PluginDbReader
  /** this node's peer id: the producer of the events it publishes */
  self: string
  /** publishes a follow-up event from this node */
  publish: (request: PublishRequest) => Promise<PublishResult>
}

/** A state key: a string, or a tuple of strings and numbers (compared by its JSON). */
export type StateKey = string | ReadonlyArray<string | number>

/** The most state keys one event may write; more is a plugin bug, and the event is not applied. */
export const MAX_KEYS_PER_EVENT = 1000

/** Reads an older version of a type: its payload schema, and a function from that payload to the current version's input. */
export interface Upcaster<O extends v.GenericSchema = v.GenericSchema, I = unknown> {
  payload: O
  to(old: v.InferOutput<O>): I
}

/**
 * How a plugin handles one event type: its current version and payload schema, how older versions upcast,
 * and (unless the plugin's own `apply` does) how it is applied, with the payload typed from the schema.
 */
export interface TypeHandler<S extends v.GenericSchema = v.GenericSchema, T extends string = string> {
  /** the version this plugin writes and reads natively */
  version: number
  payload: S
  /** older versions, each read through an `upcaster(oldSchema, (old) => current)` */
  upcast?: Record<number, Upcaster<v.GenericSchema, v.InferInput<S>>>
  /** applies one event of this type: synchronous, inside the event's transaction */
  apply?(event: PluginEvent<v.InferOutput<S>, T>, ctx: ApplyContext): void
  /** runs after apply committed, at least once (optional) */
  effect?(event: PluginEvent<v.InferOutput<S>, T>, ctx: EffectContext): Promise<void>
  /**
   * The state keys an event of this type writes (keyed compaction, docs/plugins.md): the newest event per key,
   * in the order (hlc, producer, event_id), must alone decide that key's state. Housekeeping then prunes an
   * event once every key it writes has a newer event; without `keys`, events of this type keep plain retention.
   * It must be a pure function of the (validated, upcast) payload.
   */
  keys?(payload: v.InferOutput<S>): readonly StateKey[]
}

/** The payload schema of each handled type, by type. */
export type HandledSchemas = Record<string, v.GenericSchema>

/** Any event of the types in `H`: `event.type` narrows `event.payload`. */
export type EventOf<H extends HandledSchemas> = { [K in keyof H & string]: PluginEvent<v.InferOutput<H[K]>, K> }[keyof H & string]

/** A cairn plugin. Each handled type is applied by its own `apply`, or else by the plugin's. */
export interface Plugin<H extends HandledSchemas = HandledSchemas> {
  /** appears in every log line and error; unique among loaded plugins */
  name: string
  /** the plugin's own version, for `cairn plugins` */
  version?: string
  handles: { [K in keyof H & string]: TypeHandler<H[K], K> }
  /** SQL run once each, in order, and recorded */
  migrations?: string[]
  /**
   * `false` opts out of signed snapshots: its tables are never published, and on a node that joined late its
   * state starts at the retention horizon (status says so)
   */
  snapshot?: false
  /** applies an event of any handled type that has no `apply` of its own */
  apply?(event: EventOf<H>, ctx: ApplyContext): void
  /** runs after apply committed, for types without an `effect` of their own */
  effect?(event: EventOf<H>, ctx: EffectContext): Promise<void>
}

/**
 * Declares a plugin; it only returns its argument, so that TypeScript infers each handler's payload type
 * from its schema and refuses keys a plugin does not have.
 *
 * @param plugin the plugin's definition
 * @returns the same plugin
 * @example
 * ```ts
 * const Invited = v.object({ workspace_id: v.string(), invitee: v.string() })
 * export default definePlugin({
 *   name: 'invitations',
 *   handles: {
 *     'workspace.invited': {
 *       version: 1,
 *       payload: Invited,
 *       apply (event, { db }) { db.run('INSERT INTO invitations VALUES (?, ?)', [event.payload.workspace_id, event.payload.invitee]) }
 *     }
 *   },
 *   migrations: ['CREATE TABLE invitations (workspace_id TEXT, invitee TEXT)']
 * })
 * ```
 */
export function definePlugin<H extends HandledSchemas>(plugin: Plugin<H>): Plugin<H> {
  return plugin
}

/**
 * Declares how an older version of a type is read: `to` gets that version's validated payload and returns
 * the current version's input, both typed from the schemas.
 *
 * @param payload the old version's payload schema
 * @param to maps an old payload to the current version's
 * @returns the upcaster, for `upcast: { [oldVersion]: … }`
 * @example
 * ```ts
 * upcast: { 1: upcaster(SharedV1, (old) => ({ doc: old.doc, shared_with: [old.with] })) }
 * ```
 */
export function upcaster<O extends v.GenericSchema, I>(payload: O, to: (old: v.InferOutput<O>) => I): Upcaster<O, I> {
  return { payload, to }
}

/** A loaded plugin and where it came from (a file, or 'built-in'). */
export interface LoadedPlugin {
  plugin: Plugin
  source: string
}
