/** What the node answered for one published event (the client's `PublishResult`). */
interface Published {
  event_id: string
  seq: number
  cid: string
  replayed: boolean
}

/** One problem with a request, as the node names it. */
export interface ApiIssue {
  path: string
  message: string
  code: string
}

/**
 * The node refused a request: `status` is the HTTP status, `code` the error code (`invalid_request`,
 * `idempotency_key_reused`, `cursor_beyond_end`, …), `issues` each problem with its path. Branch on `code`.
 */
export class CairnApiError extends Error {
  static name = 'CairnApiError'
  readonly status: number
  readonly code: string
  readonly issues: ApiIssue[]
  /** for `idempotency_key_reused`: the event first published under the key */
  readonly eventId?: string
  /**
   * Set by `publishBatch`: the results of the events published by its earlier requests (each request is one
   * commit), in order: the first `published.length` events of the caller's array are durable. Of the rest, a
   * request whose answer was lost (CairnUnavailableError) may have been committed too: send them again under the
   * same idempotency key, never new ones.
   */
  published?: Published[]
  constructor(status: number, code: string, message: string, issues: ApiIssue[] = [], eventId?: string) {
    super(message)
    this.name = 'CairnApiError'
    this.status = status
    this.code = code
    this.issues = issues
    this.eventId = eventId
  }
}

/**
 * The node could not be reached (not running, restarting, no readable node.json, or the connection broke)
 * and kept failing for the client's whole retry budget (`retryForMs`, default 30 s).
 */
export class CairnUnavailableError extends Error {
  static name = 'CairnUnavailableError'
  /** Set by `publishBatch`: the results of the events its earlier requests published (see CairnApiError) */
  published?: Published[]
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'CairnUnavailableError'
  }
}
