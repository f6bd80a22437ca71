import type { Setting } from '../config/settings.ts'

/** What a verb gets: its resolved settings and positionals, and where to write. */
export interface VerbContext {
  values: Record<string, unknown>
  positionals: string[]
  env: Record<string, string | undefined>
  out: (line: string) => void
  err: (line: string) => void
}

/** A CLI verb. Its settings are its flags; `run` returns the exit code. */
export interface Verb {
  name: string
  summary: string
  /** the usage line after `cairn <verb>` */
  usage: string
  settings: Setting[]
  /** settings that come only from the command line, never from the environment or config.json */
  flagsOnly?: boolean
  /** whether the verb takes positional arguments (see `usage`) */
  positionals?: boolean
  details?: string
  run: (ctx: VerbContext) => Promise<number>
}

/** Declares a verb; only returns its argument, so that types are checked. */
export function defineVerb(verb: Verb): Verb {
  return verb
}
