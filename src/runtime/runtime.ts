/** Which JavaScript runtime this process runs on. Only files under src/runtime/ branch on it. */
export type RuntimeName = 'bun' | 'deno'

declare const Deno: { version: { deno: string } } | undefined

/** @returns the runtime this process runs on */
export function runtimeName(): RuntimeName {
  if (typeof (globalThis as { Bun?: unknown }).Bun !== 'undefined') return 'bun'
  if (typeof Deno !== 'undefined') return 'deno'
  throw new Error('Cannot start cairn: it runs on Bun or Deno, not on this runtime (node cannot run libp2p 3)')
}
