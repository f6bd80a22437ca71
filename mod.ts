/**
 * @module
 * cairn: an event bus between independent nodes, built on IPFS.
 *
 * Imported, this module is the public API for plugin authors (`definePlugin`, `v`, the envelope types).
 * Executed (`bun mod.ts`, `deno run -A mod.ts`, or the compiled `cairn` binary), it runs the command line.
 *
 * @example
 * ```ts
 * import { definePlugin, v } from './mod.ts'
 *
 * export default definePlugin({
 *   name: 'apply-counter',
 *   handles: { 'workspace.invited': { version: 1, payload: v.unknown() } },
 *   migrations: ['CREATE TABLE apply_counter (event_id TEXT PRIMARY KEY, n INTEGER NOT NULL)'],
 *   apply (event, { db }) { db.run('INSERT INTO apply_counter (event_id, n) VALUES (?, 1)', [event.event_id]) }
 * })
 * ```
 */
import { main } from './src/cli/main.ts'
import { stderr, stdout } from './src/runtime/stdio.ts'

export { definePlugin, v } from './src/plugins/mod.ts'
export type { Plugin, PluginEvent, PluginDb, ApplyContext, EffectContext, TypeHandler } from './src/plugins/mod.ts'
export type { EventEnvelope } from './src/model/envelope.ts'
export { EventEnvelopeSchema } from './src/model/envelope.ts'
export type { PublishRequest, PublishResult } from './src/model/publishRequest.ts'
export { CairnNode } from './src/node/node.ts'
export { VERSION } from './src/version.ts'

if (import.meta.main) {
  const code = await main(process.argv.slice(2))
  // Output to a pipe is written asynchronously: let all of it out before exiting, or a large listing is cut short.
  await Promise.all([stdout.flush(), stderr.flush()])
  process.exit(code)
}
