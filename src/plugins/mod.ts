/**
 * @module
 * The plugin author's API: `definePlugin`, `upcaster`, `v` (valibot), `PermanentError` and the types a
 * plugin sees. Nothing here touches a runtime, SQLite or the network, so it type-checks under plain `tsc`
 * and runs under any test runner; it is published as `@cairn/plugin` (see scripts/pack.ts).
 *
 * @example
 * ```ts
 * import { definePlugin, v } from '@cairn/plugin'
 *
 * export default definePlugin({
 *   name: 'apply-counter',
 *   handles: { 'workspace.invited': { version: 1, payload: v.unknown() } },
 *   migrations: ['CREATE TABLE apply_counter (event_id TEXT PRIMARY KEY, n INTEGER NOT NULL)'],
 *   apply (event, { db }) { db.run('INSERT INTO apply_counter (event_id, n) VALUES (?, 1)', [event.event_id]) }
 * })
 * ```
 */
import * as v from 'valibot'
import { PermanentError } from '../errors.ts'
import { definePlugin, upcaster, type HandledSchemas, type Plugin } from './types.ts'

export { v, PermanentError, definePlugin, upcaster }
export type { Plugin, PluginEvent, PluginDb, PluginDbReader, PluginLog, PluginSqlValue, ApplyContext, EffectContext, TypeHandler, Upcaster, EventOf, HandledSchemas } from './types.ts'
export type { EventEnvelope } from '../model/envelope.ts'
export type { PublishRequest, PublishResult } from '../model/publishRequest.ts'

/** What a plugin file's default export receives when it is a function: the SDK, so the file needs no node_modules. */
export interface Sdk {
  v: typeof v
  definePlugin: typeof definePlugin
  upcaster: typeof upcaster
  PermanentError: typeof PermanentError
}

/** A plugin file's default export in the function form: it gets the SDK and returns the plugin. */
export type PluginFactory<H extends HandledSchemas = HandledSchemas> = (sdk: Sdk) => Plugin<H> | Promise<Plugin<H>>

/** The SDK the host hands to a function-form plugin. */
export const SDK: Sdk = { v, definePlugin, upcaster, PermanentError }
