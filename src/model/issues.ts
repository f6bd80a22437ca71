import * as v from 'valibot'

/**
 * Turns valibot issues into `path: message` lines, the way operators read them.
 *
 * @param issues the issues of a failed `safeParse`
 * @param prefix a path to put before each issue's own path (`payload`)
 * @returns one line per issue, such as `payload.invitee: Invalid email`
 */
export function formatIssues(issues: readonly v.BaseIssue<unknown>[], prefix = ''): string[] {
  return issues.map((issue) => {
    const path = v.getDotPath(issue)
    const full = [prefix, path].filter((p) => p != null && p !== '').join('.')
    return full === '' ? issue.message : `${full}: ${issue.message}`
  })
}
