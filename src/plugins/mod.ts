/**
 * @module
 * The plugin author's API: `definePlugin`, `v` (valibot) and the types a plugin sees.
 */
import * as v from 'valibot'

export { v }
export { definePlugin } from './types.ts'
export type { Plugin, PluginEvent, PluginDb, ApplyContext, EffectContext, TypeHandler } from './types.ts'
