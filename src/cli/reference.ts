import { mainHelp, verbHelp, VERBS } from './main.ts'

/** @returns docs/cli.md: the top-level help and every verb's --help, verbatim */
export function cliReference(): string {
  return [
    '# cairn command-line reference',
    '',
    'Generated from `cairn --help` and `cairn <verb> --help` by `npm run docs`; a test fails when the two disagree.',
    'Every setting of `run` can also come from the environment (`CAIRN_<NAME>`, lists comma-separated) or from',
    '`config.json` in the data directory; a flag wins over the environment, which wins over config.json.',
    '',
    '```',
    mainHelp(),
    '```',
    '',
    ...VERBS.flatMap((v) => [`## cairn ${v.name}`, '', '```', verbHelp(v), '```', ''])
  ].join('\n')
}
