import * as v from 'valibot'

/** One problem with a request: where (`payload.invitee`, `[2].type`), what, and a machine-readable code. */
export interface Issue {
  path: string
  message: string
  /** `required`, `unknown_field`, `invalid_type`, or the failed check's name (`email`, `max_length`, `regex`, …) */
  code: string
}

/**
 * Turns valibot issues into `path: message` lines, the way operators read them.
 *
 * @param issues the issues of a failed `safeParse`
 * @param prefix a path to put before each issue's own path (`payload`)
 * @returns one line per issue, such as `payload.invitee: Invalid email`
 */
export function formatIssues(issues: readonly v.BaseIssue<unknown>[], prefix = ''): string[] {
  return toIssues(issues, prefix).map(issueLine)
}

/** @returns an issue as one line, `path: message` (the message alone at the top level) */
export function issueLine(issue: Issue): string {
  return issue.path === '' ? issue.message : `${issue.path}: ${issue.message}`
}

/** @returns a path joined under a prefix: `payload` + `invitee` → `payload.invitee`, `[1]` + `type` → `[1].type` */
export function joinPath(prefix: string, path: string): string {
  return [prefix, path].filter((p) => p !== '').join('.')
}

/**
 * Turns valibot issues into structured ones without validator jargon: a missing field is `required`, a field
 * a strict object does not know is `unknown_field`, a wrong JSON type is `invalid_type`; other checks keep
 * their name as the code and their message, and so does any issue whose schema set its own message.
 *
 * @param issues the issues of a failed `safeParse`
 * @param prefix a path to put before each issue's own path
 * @returns one Issue per valibot issue
 */
export function toIssues(issues: readonly v.BaseIssue<unknown>[], prefix = ''): Issue[] {
  return issues.map((issue) => {
    const path = joinPath(prefix, v.getDotPath(issue) ?? '')
    const unknown = issue.kind === 'schema' && issue.type.endsWith('object') && issue.expected === 'never'
    const missing = !unknown && issue.kind === 'schema' && issue.received === 'undefined' && issue.path?.at(-1)?.type === 'object'
    const code = unknown ? 'unknown_field' : missing ? 'required' : issue.kind === 'schema' ? 'invalid_type' : issue.type
    // A message the schema's author wrote is kept; only valibot's own jargon is rewritten.
    if (!/^Invalid (key|type): /.test(issue.message)) return { path, message: issue.message, code }
    const message = unknown ? 'is not a known field' : missing ? 'is required' : issue.kind === 'schema' ? `expected ${issue.expected ?? issue.type}, received ${issue.received}` : issue.message
    return { path, message, code }
  })
}
