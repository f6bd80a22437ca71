/**
 * @module
 * The typed client of a cairn node's loopback HTTP API, for backends on Node 20+, Bun and Deno: publish
 * with idempotency keys and safe retries, follow the event stream across restarts, find the node from
 * its data directory. docs/api.md describes the API it speaks.
 */
export {
  CairnClient,
  type CairnEvent,
  type CallOptions,
  type EventsPage,
  type ClientOptions,
  type Limits,
  type PublishInput,
  type PublishResult,
  type PublishStreamItem,
  type StreamItem,
  type SubscribeOptions
} from './client.ts'
export { discover, type Endpoint } from './discover.ts'
export { CairnApiError, CairnUnavailableError, type ApiIssue } from './errors.ts'
export { readSse, type SseMessage } from './sse.ts'
