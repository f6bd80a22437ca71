import { beforeAll, describe, expect, test } from 'bun:test'
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { cairn, NodeProcess, ROOT, tempDir, waitFor } from '../helpers/process.ts'
import { query } from '../helpers/db.ts'

/** Runs a command to completion. */
async function sh(cmd: string[], cwd: string): Promise<{ code: number; out: string }> {
  const proc = Bun.spawn(cmd, { cwd, stdout: 'pipe', stderr: 'pipe', env: { ...process.env, npm_config_update_notifier: 'false' } })
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  return { code, out: stdout + stderr }
}

const BIN = join(ROOT, 'node_modules/.bin')
let tarball = ''

beforeAll(async () => {
  const r = await sh([process.execPath, join(ROOT, 'scripts/pack.ts')], ROOT)
  expect(r.code).toBe(0)
  tarball = r.out.trim().split('\n').at(-1) ?? ''
})

/**
 * An author's directory: the packed SDK installed with npm alone (no registry: --offline), then the dev
 * tools an author installs from the registry (bun, typescript, @types/bun) linked from this checkout.
 */
async function authorDir(path: string): Promise<void> {
  const install = await sh(['npm', 'install', '--offline', '--no-audit', '--no-fund', tarball], path)
  expect(install).toMatchObject({ code: 0 })
  for (const dep of ['typescript', '@types/bun', 'bun-types', 'bun']) {
    mkdirSync(dirname(join(path, 'node_modules', dep)), { recursive: true })
    symlinkSync(join(ROOT, 'node_modules', dep), join(path, 'node_modules', dep))
  }
}

describe('the plugin SDK outside this repository', () => {
  test('npm install of the packed SDK, plugins new, its test passes, tsc is clean, and the binary loads and applies it', async () => {
    using tmp = tempDir()
    const author = join(tmp.path, 'author')
    mkdirSync(author)
    await authorDir(author)
    const scaffold = await cairn(['plugins', 'new', 'doc-share', '--type', 'document.shared', '--dir', author])
    expect(scaffold.code).toBe(0)
    expect(JSON.parse(readFileSync(join(author, 'package.json'), 'utf8'))).toMatchObject({
      type: 'module',
      scripts: { test: 'bun test' },
      dependencies: { '@cairn/plugin': expect.stringContaining('.tgz') }
    })

    const tests = await sh([join(BIN, 'bun'), 'test'], author)
    expect(tests.out).toContain(' 2 pass')
    expect(tests.code).toBe(0)
    expect(await sh([join(BIN, 'tsc'), '--noEmit', '-p', author], author)).toEqual({ code: 0, out: '' })
    // The plugin alone under plain tsc: no Bun or Node types, every declaration file checked.
    const plain = {
      compilerOptions: { target: 'ES2022', lib: ['ES2022', 'DOM'], module: 'ESNext', moduleResolution: 'bundler', types: [], strict: true, noEmit: true, skipLibCheck: false },
      files: ['doc-share.ts']
    }
    writeFileSync(join(author, 'tsconfig.plain.json'), JSON.stringify(plain))
    expect(await sh([join(BIN, 'tsc'), '-p', join(author, 'tsconfig.plain.json')], author)).toEqual({ code: 0, out: '' })

    await using node = await NodeProcess.init(tmp.path, 'n')
    await node.start(['--plugins', author])
    const { event_id } = await node.publish({ type: 'document.shared', payload: { id: 'doc-1', note: 'hi' } })
    await waitFor('the plugin to apply it', () => query(node.dir, 'SELECT 1 FROM doc_share_rows').length > 0)
    expect(query(node.dir, 'SELECT event_id, id, note FROM doc_share_rows')).toEqual([{ event_id, id: 'doc-1', note: 'hi' }])
    const listed = await cairn(['plugins', '--data', node.dir, '--json'])
    expect(JSON.parse(listed.stdout).map((p: { name: string }) => p.name)).toEqual(['workspace-access', 'doc-share'])
  })

  test('the test kit from the tarball runs under Deno too', async () => {
    using tmp = tempDir()
    await authorDir(tmp.path)
    await cairn(['plugins', 'new', 'dt', '--type', 'a.b', '--dir', tmp.path])
    const test = `import { testPlugin } from '@cairn/plugin/test'
import plugin from './dt.ts'
Deno.test('dt applies once under Deno', async () => {
  await using t = await testPlugin(plugin)
  await t.apply([{ type: 'a.b', payload: { id: 'x' } }])
  if (JSON.stringify(t.all('SELECT id FROM dt_rows')) !== '[{"id":"x"}]' || (await t.redeliver()) !== 0) throw new Error('not applied exactly once')
})
`
    writeFileSync(join(tmp.path, 'dt.deno.ts'), test)
    // --no-check: the directory's tsconfig.json is the scaffold's, for Bun; tsc checks the plugin above.
    const r = await sh([join(BIN, 'deno'), 'test', '-A', '--no-check', 'dt.deno.ts'], tmp.path)
    expect(r.out).toContain('1 passed')
    expect(r.code).toBe(0)
  })

  test('plugins new refuses a bad name or type and never overwrites; plugins rebuild names the plugins it knows', async () => {
    using tmp = tempDir()
    expect(await cairn(['plugins', 'new', 'Bad Name', '--type', 'a.b', '--dir', tmp.path])).toMatchObject({ code: 1, stderr: expect.stringContaining('Invalid plugin name "Bad Name"') })
    expect(await cairn(['plugins', 'new', 'ok', '--type', 'NoDots', '--dir', tmp.path])).toMatchObject({ code: 1, stderr: expect.stringContaining('Invalid event type "NoDots"') })
    expect(await cairn(['plugins', 'new', 'ok', '--dir', tmp.path])).toMatchObject({ code: 1, stderr: expect.stringContaining('needs --type TYPE') })
    // A type under cairn. would give a plugin that the loader refuses: refused here in the loader's words, nothing written.
    expect(await cairn(['plugins', 'new', 'ok', '--type', 'cairn.foo', '--dir', tmp.path])).toMatchObject({
      code: 1,
      stderr: expect.stringContaining(`Invalid event type "cairn.foo": Expected no event type in cairn's reserved namespace cairn.* (cairn's own membership changes)`)
    })
    expect(existsSync(join(tmp.path, 'ok.ts'))).toBe(false)
    expect((await cairn(['plugins', 'new', 'ok', '--type', 'a.b', '--dir', tmp.path])).code).toBe(0)
    expect(await cairn(['plugins', 'new', 'ok', '--type', 'a.b', '--dir', tmp.path])).toMatchObject({ code: 1, stderr: expect.stringContaining(`Refusing to overwrite ${join(tmp.path, 'ok.ts')}`) })
    const node = await NodeProcess.init(tmp.path, 'n')
    expect(await cairn(['plugins', 'rebuild', 'nope', '--data', node.dir])).toMatchObject({ code: 1, stderr: expect.stringContaining('No plugin nope has run on this node (known: none)') })
  })

  test('tsc refuses a payload field the schema lacks and a misspelled key, naming each', async () => {
    using tmp = tempDir()
    await authorDir(tmp.path)
    await cairn(['plugins', 'new', 'probe', '--type', 'document.shared', '--dir', tmp.path])
    const header = "import { definePlugin, upcaster, v } from '@cairn/plugin'\nconst P = v.object({ id: v.string() })\n"
    writeFileSync(
      join(tmp.path, 'field.ts'),
      `${header}export default definePlugin({ name: 'f', handles: { 'a.b': { version: 1, payload: P, apply (event) { void event.payload.does_not_exist } } } })\n`
    )
    writeFileSync(join(tmp.path, 'key.ts'), `${header}export default definePlugin({ name: 'k', handles: { 'a.b': { verison: 1, payload: P, apply () {} } } })\n`)
    writeFileSync(join(tmp.path, 'upcast.ts'), `${header}export default definePlugin({ name: 'u', handles: { 'a.b': { version: 2, payload: P, upcsat: {}, apply () {} } }, apply () {} })\n`)
    writeFileSync(
      join(tmp.path, 'upcaster.ts'),
      `${header}export default definePlugin({ name: 'c', handles: { 'a.b': { version: 2, payload: P, upcast: { 1: upcaster(v.object({ n: v.number() }), (old) => ({ id: old.n })) }, apply () {} } } })\n`
    )
    const r = await sh([join(BIN, 'tsc'), '--noEmit', '-p', tmp.path], tmp.path)
    expect(r.code).toBe(2)
    const errors = r.out
      .trim()
      .split('\n')
      .filter((l) => /^\w+\.ts\(/.test(l))
      .map((l) => l.replace(/^(\w+\.ts)\(\d+,\d+\): error (TS\d+): .*?('\w+'|$).*/, '$1 $2 $3'))
      .sort()
    expect(errors).toEqual(["field.ts TS2339 'does_not_exist'", "key.ts TS2561 'verison'", "upcast.ts TS2561 'upcsat'", 'upcaster.ts TS2322 '])
  })
})
