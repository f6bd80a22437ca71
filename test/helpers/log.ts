import type { Log } from '../../src/log/logger.ts'

/** A line a recording log kept: its level, message and fields (its children's fields included). */
export interface LoggedLine {
  level: 'debug' | 'info' | 'warn' | 'error'
  msg: string
  fields: Record<string, unknown>
}

/** A log that keeps its lines, and `count`: how many of them have `reason` (and `peer`, when given). */
export interface RecordingLog {
  log: Log
  lines: LoggedLine[]
  count: (reason: string, peer?: string) => number
}

/** @returns a log that keeps every line, for tests that wait on a decision the code logs or check what it said */
export function recordingLog(): RecordingLog {
  const lines: LoggedLine[] = []
  const make = (base: Record<string, unknown>): Log => {
    const at =
      (level: LoggedLine['level']) =>
      (msg: string, fields: Record<string, unknown> = {}): void => {
        lines.push({ level, msg, fields: { ...base, ...fields } })
      }
    return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: (fields) => make({ ...base, ...fields }) }
  }
  const count = (reason: string, peer?: string): number => lines.filter((l) => l.fields.reason === reason && (peer == null || l.fields.peer === peer)).length
  return { log: make({}), lines, count }
}
