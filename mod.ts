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
 * ```
 */
import { main } from './src/cli/main.ts'

export type { EventEnvelope } from './src/bus/envelope.ts'
export { EventEnvelopeSchema } from './src/bus/envelope.ts'
export type { PublishRequest, PublishResult } from './src/bus/publishRequest.ts'
export { CairnNode } from './src/node/node.ts'
export { VERSION } from './src/version.ts'

if (import.meta.main) {
  const code = await main(process.argv.slice(2))
  process.exit(code)
}
