import type { Issue } from '../model/issues.ts'

/** The body of every error answer: `{ error: { code, message, issues } }`, plus what a code adds. */
export function errorBody(code: string, message: string, issues: readonly Issue[] = [], extra: Record<string, unknown> = {}): { error: Record<string, unknown> } {
  return { error: { code, message, issues, ...extra } }
}

/** @returns a JSON error response in the one error shape */
export function errorResponse(status: number, code: string, message: string, options: { issues?: readonly Issue[]; extra?: Record<string, unknown>; headers?: Record<string, string> } = {}): Response {
  return Response.json(errorBody(code, message, options.issues, options.extra), { status, headers: options.headers })
}

/** Maps an error's name to the HTTP status and error code the endpoint answers with. */
export const STATUS_BY_ERROR: Record<string, { status: number; code: string }> = {
  ValidationError: { status: 400, code: 'invalid_request' },
  NotOwnerError: { status: 403, code: 'not_owner' },
  NotFoundError: { status: 404, code: 'not_found' },
  IdempotencyConflictError: { status: 409, code: 'idempotency_key_reused' },
  StaleCursorError: { status: 409, code: 'stale_cursor' },
  ProducerDivergedError: { status: 409, code: 'producer_diverged' },
  RemovedMemberError: { status: 409, code: 'removed_member' },
  EventTooLargeError: { status: 413, code: 'too_large' },
  NotStartedError: { status: 503, code: 'not_started' },
  CommitFailedError: { status: 503, code: 'commit_failed' },
  ClockSkewError: { status: 503, code: 'clock_skew' }
}
