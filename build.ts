/**
 * Builds the single-file binary `dist/cairn` with `bun build --compile`. The built-in plugins are
 * imported statically, so they are embedded; the binary needs no node_modules and no Bun installed.
 *
 * It also bundles the typed client (`src/client/mod.ts`) as `dist/client.mjs` for Node 20+, the
 * `default` condition of the package's `./client` export (Bun and Deno import the TypeScript as it is).
 *
 * Usage: bun build.ts [--outfile PATH] [--target bun-linux-x64]
 */
import { parseArgs } from 'node:util'
import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'

const { values } = parseArgs({ options: { outfile: { type: 'string', default: 'dist/cairn' }, target: { type: 'string' } } })
mkdirSync(dirname(values.outfile), { recursive: true })
// --bytecode embeds JavaScriptCore's bytecode beside the source, so that a start skips parsing and compiling
// the bundle (BENCHMARKS.md, "Start-up"); it needs --format=esm for mod.ts's top-level await.
const args = ['build', '--compile', '--minify-syntax', '--sourcemap', '--bytecode', '--format=esm', '--define', `CAIRN_BUILD=${JSON.stringify(buildId())}`, 'mod.ts', '--outfile', values.outfile]
if (values.target != null) args.push('--target', values.target)
const proc = Bun.spawn([process.execPath, ...args], { stdout: 'inherit', stderr: 'inherit' })
const code = await proc.exited
if (code !== 0) {
  console.error(`build.ts: bun build failed with exit code ${code}`)
  process.exit(code)
}
console.log(`built ${values.outfile}`)

/** @returns the commit this checkout is at (12 hex digits, `-dirty` with uncommitted changes), or `unknown` outside git */
function buildId(): string {
  const git = (...a: string[]): string | undefined => {
    try {
      const r = Bun.spawnSync(['git', ...a], { stdout: 'pipe', stderr: 'ignore' })
      return r.exitCode === 0 ? r.stdout.toString().trim() : undefined
    } catch {
      return undefined // no git on this machine
    }
  }
  const commit = git('rev-parse', '--short=12', 'HEAD')
  if (commit == null) return 'unknown'
  return git('status', '--porcelain', '--untracked-files=no') === '' ? commit : `${commit}-dirty`
}
const client = await Bun.build({ entrypoints: ['src/client/mod.ts'], target: 'node', format: 'esm', outdir: 'dist', naming: 'client.mjs' })
if (!client.success) {
  console.error(`build.ts: bundling the client failed: ${client.logs.join('\n')}`)
  process.exit(1)
}
console.log('built dist/client.mjs')
