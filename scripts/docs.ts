/** Regenerates docs/cli.md from the CLI's own help texts: `npm run docs`. */
import { writeFileSync } from 'node:fs'
import { cliReference } from '../src/cli/reference.ts'

writeFileSync(new URL('../docs/cli.md', import.meta.url), cliReference())
console.log('wrote docs/cli.md')
