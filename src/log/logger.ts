import pino from 'pino'
import pretty from 'pino-pretty'
import { stderrIsTerminal } from '../runtime/stdio.ts'

/** Log levels, lowest first. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

/** A structured logger: a message and fields (event_id, producer, plugin, …). */
export interface Log {
  debug(msg: string, fields?: Record<string, unknown>): void
  info(msg: string, fields?: Record<string, unknown>): void
  warn(msg: string, fields?: Record<string, unknown>): void
  error(msg: string, fields?: Record<string, unknown>): void
  child(fields: Record<string, unknown>): Log
}

export interface LoggerInit {
  level?: LogLevel
  /** pretty on a terminal, JSON lines otherwise */
  format?: 'pretty' | 'json'
}

function wrap(logger: pino.Logger): Log {
  return {
    debug: (m, f) => {
      logger.debug(f ?? {}, m)
    },
    info: (m, f) => {
      logger.info(f ?? {}, m)
    },
    warn: (m, f) => {
      logger.warn(f ?? {}, m)
    },
    error: (m, f) => {
      logger.error(f ?? {}, m)
    },
    child: (fields) => wrap(logger.child(fields))
  }
}

/**
 * Creates a pino logger writing to stderr, synchronously (so nothing is lost on exit): JSON lines
 * (`{"level","time","msg",…fields}`) or one readable line per entry.
 */
export function createLogger(init: LoggerInit = {}): Log {
  const format = init.format ?? (stderrIsTerminal() ? 'pretty' : 'json')
  const options: pino.LoggerOptions = {
    level: init.level ?? 'info',
    base: undefined,
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) }
  }
  const destination =
    format === 'json'
      ? pino.destination({ dest: 2, sync: true })
      : pretty({ destination: 2, sync: true, singleLine: true, translateTime: 'HH:MM:ss', ignore: 'pid,hostname', colorize: stderrIsTerminal() })
  return wrap(pino(options, destination))
}

/** A logger that drops everything (tests, library use). */
export const silentLog: Log = { debug() {}, info() {}, warn() {}, error() {}, child: () => silentLog }
