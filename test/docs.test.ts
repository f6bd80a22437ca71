import { describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { cairn, ROOT } from './helpers/process.ts'
import { VERBS } from '../src/cli/main.ts'
import { scaffoldPlugin } from '../src/plugins/scaffold.ts'

describe('docs/cli.md', () => {
  test('holds the --help text of cairn and of every verb, exactly as the binary prints it', async () => {
    const doc = readFileSync(join(ROOT, 'docs', 'cli.md'), 'utf8')
    const top = await cairn(['--help'])
    expect(doc).toContain('```\n' + top.stdout.trimEnd() + '\n```')
    for (const verb of VERBS) {
      const help = await cairn([verb.name, '--help'])
      expect(help.code).toBe(0)
      expect(doc).toContain('```\n' + help.stdout.trimEnd() + '\n```')
    }
  })
})

describe('docs/plugins.md', () => {
  test('shows the tests `cairn plugins new` generates, complete, as it writes them', () => {
    const doc = readFileSync(join(ROOT, 'docs', 'plugins.md'), 'utf8')
    expect(doc).toContain('```ts\n' + scaffoldPlugin('doc-share', 'document.shared').files['doc-share.test.ts'].trimEnd() + '\n```')
  })
})
