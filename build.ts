/**
 * Builds the single-file binary `dist/cairn` with `bun build --compile`. The built-in plugins are
 * imported statically, so they are embedded; the binary needs no node_modules and no Bun installed.
 *
 * Usage: bun build.ts [--outfile PATH] [--target bun-linux-x64]
 */
import { parseArgs } from 'node:util'
import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'

const { values } = parseArgs({ options: { outfile: { type: 'string', default: 'dist/cairn' }, target: { type: 'string' } } })
mkdirSync(dirname(values.outfile), { recursive: true })
const args = ['build', '--compile', '--minify-syntax', '--sourcemap', 'mod.ts', '--outfile', values.outfile]
if (values.target != null) args.push('--target', values.target)
const proc = Bun.spawn([process.execPath, ...args], { stdout: 'inherit', stderr: 'inherit' })
const code = await proc.exited
if (code !== 0) {
  console.error(`build.ts: bun build failed with exit code ${code}`)
  process.exit(code)
}
console.log(`built ${values.outfile}`)
