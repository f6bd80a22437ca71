import { describe, expect, test } from 'bun:test'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { cairn, NodeProcess, ROOT, tempDir } from './helpers/process.ts'
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

describe('curl examples', () => {
  test('every curl line of README.md and docs/*.md works against a node as written (its placeholders filled in)', async () => {
    const files = [
      'README.md',
      ...readdirSync(join(ROOT, 'docs'))
        .filter((f) => f.endsWith('.md'))
        .map((f) => join('docs', f))
    ]
    const lines = files.flatMap((f) =>
      readFileSync(join(ROOT, f), 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('curl '))
        .map((l) => ({ file: f, line: l.replace(/\s+# .*$/, '') }))
    )
    expect(lines.length).toBeGreaterThan(0)
    using tmp = tempDir()
    await using node = await NodeProcess.init(tmp.path, 'n')
    await node.start()
    const payload = JSON.stringify({ workspace_id: 'w1', invitee: 'ann@example.com', role: 'member', invited_by: 'bob@example.com' })
    const results = []
    for (const { file, line } of lines) {
      const command = line
        .replaceAll('127.0.0.1:7400', node.http)
        .replaceAll('DIR/', `${node.dir}/`)
        .replaceAll('{…}', payload)
        .replace(/^curl /, "curl -s -o /dev/null -w '%{http_code}' ")
      const r = Bun.spawnSync(['sh', '-c', command])
      results.push({ file, line, status: r.stdout.toString() })
    }
    expect(results.filter((r) => !/^2\d\d$/.test(r.status))).toEqual([])
    expect(await node.stop()).toBe(0)
  })
})

describe('prose', () => {
  test('a paragraph of README.md or docs/*.md that starts in lowercase goes on with a sentence the prose before it left open', () => {
    const files = [
      'README.md',
      ...readdirSync(join(ROOT, 'docs'))
        .filter((f) => f.endsWith('.md'))
        .map((f) => join('docs', f))
    ]
    const dangling: string[] = []
    for (const f of files) {
      let fence = false
      let blank = true
      // the last line of prose before this one, code blocks skipped
      let prose = ''
      for (const [i, line] of readFileSync(join(ROOT, f), 'utf8').split('\n').entries()) {
        if (line.startsWith('```')) fence = !fence
        else if (!fence && line.trim() !== '') {
          if (blank && /^[a-z]/.test(line) && /[.:!?)]$/.test(prose.trim())) dangling.push(`${f}:${i + 1}: ${line}`)
          prose = line
        }
        blank = !fence && line.trim() === ''
      }
    }
    expect(dangling).toEqual([])
  })
})
