/** An operator-facing error: its message is printed alone, without a stack trace. */
export class UsageError extends Error {
  static name = 'UsageError'
  constructor (message: string) {
    super(message)
    this.name = 'UsageError'
  }
}

/** The data directory is missing, incomplete or damaged. */
export class DataDirError extends Error {
  static name = 'DataDirError'
  constructor (message: string) {
    super(message)
    this.name = 'DataDirError'
  }
}

/** Another process is running a node on the same data directory. */
export class DataDirBusyError extends Error {
  static name = 'DataDirBusyError'
  constructor (message: string) {
    super(message)
    this.name = 'DataDirBusyError'
  }
}

/** A setting (flag, environment variable or config.json entry) has a bad value. */
export class ConfigError extends Error {
  static name = 'ConfigError'
  constructor (message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

/** Input that failed validation; `issues` lists `path: message` lines. */
export class ValidationError extends Error {
  static name = 'ValidationError'
  readonly issues: string[]
  constructor (message: string, issues: string[] = []) {
    super(message)
    this.name = 'ValidationError'
    this.issues = issues
  }
}

/** The node is not running, so a verb that talks to it cannot. */
export class NotRunningError extends Error {
  static name = 'NotRunningError'
  constructor (message: string) {
    super(message)
    this.name = 'NotRunningError'
  }
}
