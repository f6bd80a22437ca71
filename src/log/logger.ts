/** Log levels, lowest first. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

/** A structured logger: a message and fields (event_id, producer, plugin, …). */
export interface Log {
  debug (msg: string, fields?: Record<string, unknown>): void
  info (msg: string, fields?: Record<string, unknown>): void
  warn (msg: string, fields?: Record<string, unknown>): void
  error (msg: string, fields?: Record<string, unknown>): void
  child (fields: Record<string, unknown>): Log
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 }

export interface LoggerInit {
  level?: LogLevel
  format?: 'pretty' | 'json'
  write?: (line: string) => void
}

/**
 * Creates a logger writing one line per entry to stderr: JSON (`{"time","level","msg",…fields}`)
 * or a readable `HH:MM:SS level msg key=value` form.
 */
export function createLogger (init: LoggerInit = {}, bound: Record<string, unknown> = {}): Log {
  const min = RANK[init.level ?? 'info']
  const format = init.format ?? (process.stderr.isTTY === true ? 'pretty' : 'json')
  const write = init.write ?? ((line: string) => { process.stderr.write(line + '\n') })
  const emit = (level: LogLevel, msg: string, fields?: Record<string, unknown>): void => {
    if (RANK[level] < min) return
    const all = { ...bound, ...fields }
    if (format === 'json') {
      write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...all }))
    } else {
      const kv = Object.entries(all).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ')
      write(`${new Date().toISOString().slice(11, 19)} ${level.padEnd(5)} ${msg}${kv === '' ? '' : ' ' + kv}`)
    }
  }
  return {
    debug: (m, f) => { emit('debug', m, f) },
    info: (m, f) => { emit('info', m, f) },
    warn: (m, f) => { emit('warn', m, f) },
    error: (m, f) => { emit('error', m, f) },
    child: (fields) => createLogger(init, { ...bound, ...fields })
  }
}

/** A logger that drops everything (tests, library use). */
export const silentLog: Log = { debug () {}, info () {}, warn () {}, error () {}, child: () => silentLog }
