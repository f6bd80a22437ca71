import { parseArgs } from 'node:util'
import { stderr, stdout } from '../runtime/stdio.ts'
import { RUN_SETTINGS } from '../config/catalog.ts'
import { readConfigFile, resolveSettings } from '../config/resolve.ts'
import { envName } from '../config/settings.ts'
import { VERSION, VERSION_TEXT } from '../version.ts'
import { UsageError } from '../errors.ts'
import type { Verb } from './verb.ts'
import { idVerb, initVerb, reclockVerb, rekeyVerb, runVerb } from './verbs/node.ts'
import { eventsVerb, exportVerb, gapsVerb, publishVerb, statusVerb } from './verbs/bus.ts'
import { deadVerb, pluginsVerb, replayVerb, schemaVerb, snapshotVerb, sqlVerb } from './verbs/plugins.ts'
import { demoVerb } from './verbs/demo.ts'
import { doctorVerb } from './verbs/doctor.ts'
import { membersVerb } from './verbs/members.ts'
import { consoleVerb } from './verbs/console.ts'

/** Every verb, in the order --help lists them. */
export const VERBS: Verb[] = [
  initVerb,
  runVerb,
  idVerb,
  publishVerb,
  eventsVerb,
  statusVerb,
  membersVerb,
  rekeyVerb,
  reclockVerb,
  consoleVerb,
  gapsVerb,
  exportVerb,
  pluginsVerb,
  schemaVerb,
  sqlVerb,
  deadVerb,
  replayVerb,
  snapshotVerb,
  doctorVerb,
  demoVerb
]

/** Errors whose message is all an operator needs: printed without a stack trace. */
const EXPECTED = new Set([
  'UsageError',
  'ConfigError',
  'DataDirError',
  'DataDirBusyError',
  'OutboxBlocksLostError',
  'NotRunningError',
  'ValidationError',
  'AddressInUseError',
  'ListenError',
  'NodeAnswerError',
  'PluginLoadError',
  'InvalidHeadError',
  'NotOwnerError'
])

/** @returns the top-level help text */
export function mainHelp(): string {
  const width = Math.max(...VERBS.map((v) => v.name.length))
  // demo makes its own temporary directories: the verbs that take no --data are named.
  const dataless = VERBS.filter((v) => !v.settings.some((s) => s.name === 'data')).map((v) => v.name)
  return [
    `cairn ${VERSION}: an event bus between independent nodes, built on IPFS`,
    '',
    'Usage: cairn <verb> [flags]',
    '',
    'Verbs:',
    ...VERBS.map((v) => `  ${v.name.padEnd(width)}  ${v.summary}`),
    '',
    'Flags:',
    "  --help     show help (cairn <verb> --help for a verb's flags)",
    '  --version  print the version',
    '',
    `Every verb${dataless.length > 0 ? ` but ${dataless.join(', ')}` : ''} takes --data DIR (or CAIRN_DATA); the default is ~/.cairn.`
  ].join('\n')
}

/** @returns a verb's help text: usage, flags with their environment variables, details */
export function verbHelp(verb: Verb): string {
  const flag = (s: Verb['settings'][number]): string => `--${s.name}${s.kind === 'string' ? ` ${s.value ?? 'VALUE'}` : ''}`
  const width = Math.max(...verb.settings.map((s) => flag(s).length), 6)
  const runLike = verb.settings.some((s) => s.inFile !== false) || verb.settings.includes(RUN_SETTINGS[0])
  return [
    `Usage: cairn ${verb.name} ${verb.usage}`,
    '',
    `${verb.summary[0].toUpperCase()}${verb.summary.slice(1)}.`,
    ...(verb.details != null ? ['', verb.details] : []),
    '',
    'Flags:',
    ...verb.settings.map(
      (s) =>
        `  ${flag(s).padEnd(width)}  ${s.description}${s.multiple === true ? ' [repeatable]' : ''}${runLike && s.inFile !== false ? ` [${envName(s)}]` : s.name === 'data' ? ` [${envName(s)}]` : ''}`
    ),
    `  ${'--help'.padEnd(width)}  show this help`
  ].join('\n')
}

/** A word that is a negative number (`-5`, `-1.5h`, `-.5`): never a flag, since no flag's name starts with a digit. */
const NEGATIVE = /^-\.?\d/

/**
 * Gives each flag that takes a value and is followed by a negative number that number as its value
 * (`--heads-per-second -5` as `--heads-per-second=-5`), so that the setting's own check refuses it, naming the
 * setting, the value and what it takes, as it does for `=-5`; parseArgs would call the value ambiguous.
 *
 * @returns the arguments, a flag and its negative value joined with `=`; nothing after `--` is changed
 */
function joinNegativeValues(args: readonly string[], settings: readonly Verb['settings'][number][]): string[] {
  const takesValue = new Set(settings.filter((s) => s.kind === 'string').map((s) => `--${s.name}`))
  const out: string[] = []
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--') return [...out, ...args.slice(i)]
    if (takesValue.has(args[i]) && i + 1 < args.length && NEGATIVE.test(args[i + 1])) {
      out.push(`${args[i]}=${args[i + 1]}`)
      i++
    } else out.push(args[i])
  }
  return out
}

/**
 * Runs the command line.
 *
 * @param argv the arguments after the program name
 * @returns the exit code
 */
export async function main(argv: string[], env: Record<string, string | undefined> = process.env): Promise<number> {
  const out = (line: string): void => {
    stdout.line(line)
  }
  const err = (line: string): void => {
    stderr.line(line)
  }
  const [first, ...rest] = argv
  if (first == null || first === '--help' || first === '-h' || first === 'help') {
    out(mainHelp())
    return first == null ? 2 : 0
  }
  if (first === '--version' || first === '-v' || first === 'version') {
    // semver's build metadata: every build between two releases is VERSION, the commit tells them apart
    out(VERSION_TEXT)
    return 0
  }
  const verb = VERBS.find((v) => v.name === first)
  if (verb == null) {
    err(first.startsWith('-') ? `cairn: unknown flag ${first}; see cairn --help` : `cairn: unknown verb "${first}"; see cairn --help for the verbs`)
    return 2
  }
  try {
    if (rest.includes('--help') || rest.includes('-h')) {
      out(verbHelp(verb))
      return 0
    }
    let parsed: ReturnType<typeof parseArgs>
    try {
      parsed = parseArgs({
        args: joinNegativeValues(rest, verb.settings),
        options: Object.fromEntries(verb.settings.map((s) => [s.name, { type: s.kind, multiple: s.multiple === true }])),
        allowPositionals: verb.positionals === true,
        strict: true
      })
    } catch (e) {
      const m = /'([^']+)'/.exec((e as Error).message)
      const code = (e as { code?: string }).code
      const flag = m?.[1].split(' ')[0] ?? ''
      const setting = verb.settings.find((s) => `--${s.name}` === flag)
      // parseArgs calls a value that starts with a dash ambiguous, over three lines: said on one, with the value.
      const next = rest.find((a, i) => i > 0 && rest[i - 1] === flag && a.startsWith('-'))
      const what =
        code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION'
          ? `unknown flag ${flag}`
          : code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && /ambiguous/.test((e as Error).message) && next != null
            ? `${flag} needs a value ${setting?.value ?? 'VALUE'}, and ${next} looks like a flag; to give ${flag} a value that starts with a dash, write ${flag}=${next}`
            : code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && /argument missing/.test((e as Error).message)
              ? `${flag} needs a value ${setting?.value ?? 'VALUE'}`
              : (e as Error).message
      throw new UsageError(`${what}; see cairn ${verb.name} --help`)
    }
    const flags = parsed.values as Record<string, unknown>
    const [data] = Object.values(
      resolveSettings(
        verb.settings.filter((s) => s.name === 'data'),
        flags,
        env,
        {}
      )
    )
    const known = new Set(RUN_SETTINGS.map((s) => s.name))
    const file = typeof data === 'string' && verb.settings.some((s) => s.inFile !== false) ? readConfigFile(data, known) : {}
    const values = resolveSettings(
      verb.settings,
      flags,
      Object.fromEntries(Object.entries(env).filter(([k]) => verb.settings.some((s) => (s.inFile !== false || s.name === 'data') && envName(s) === k))),
      file
    )
    return await verb.run({ values, positionals: parsed.positionals, env, out, err })
  } catch (e) {
    const error = e as Error
    if (EXPECTED.has(error.name)) {
      err(`cairn ${verb.name}: ${error.message}`)
      return 1
    }
    err(`cairn ${verb.name}: unexpected error: ${error.stack ?? error.message}`)
    return 1
  }
}
