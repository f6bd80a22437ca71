/**
 * Builds the installable packages into dist/packages/NAME/ and packs each with `npm pack` into
 * dist/packages/: today `@cairn/plugin` (the plugin SDK and its test kit, packages/plugin/). Each package
 * is JavaScript bundled from src/ by `bun build`, declarations emitted by `tsc`, and its own runtime
 * dependencies bundled into the tarball (`bundleDependencies`), so it installs without a registry.
 *
 * Usage: bun scripts/pack.ts [--no-pack]
 * Prints the tarballs' paths, one a line.
 */
import { parseArgs } from 'node:util'
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { VERSION } from '../src/version.ts'

/** A package built from this repository: its entries (export path → source), and its runtime dependencies. */
interface PackageSpec {
  name: string
  dir: string
  description: string
  entries: Record<string, string>
  /** bundled into the tarball, with their versions from the root package.json */
  dependencies: string[]
}

const PACKAGES: PackageSpec[] = [
  {
    name: '@cairn/plugin',
    dir: 'plugin',
    description: 'Write and test cairn plugins: definePlugin, v (valibot), the plugin types and the test kit',
    entries: { '.': 'src/plugins/mod.ts', './test': 'src/plugins/testkit.ts' },
    dependencies: ['valibot']
  }
]

const root = resolve(import.meta.dir, '..')
const { values } = parseArgs({ options: { 'no-pack': { type: 'boolean', default: false } } })
const rootPkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; license: string }

/** Runs a command in `cwd`; exits with its code when it fails. @returns its stdout */
async function sh(cmd: string[], cwd: string): Promise<string> {
  const proc = Bun.spawn(cmd, { cwd, stdout: 'pipe', stderr: 'inherit' })
  const out = await new Response(proc.stdout).text()
  const code = await proc.exited
  if (code !== 0) {
    console.error(`scripts/pack.ts: ${cmd.join(' ')} failed with exit code ${code}`)
    process.exit(code)
  }
  return out
}

for (const spec of PACKAGES) {
  const out = join(root, 'dist/packages', spec.dir)
  rmSync(out, { recursive: true, force: true })
  mkdirSync(out, { recursive: true })
  // Declarations for every entry, under types/ with the repository's layout.
  await sh([join(root, 'node_modules/.bin/tsc'), '-p', join(root, 'packages', spec.dir, 'tsconfig.json')], root)
  const exports: Record<string, { types: string; default: string }> = {}
  for (const [path, source] of Object.entries(spec.entries)) {
    const base = path === '.' ? 'index' : path.slice(2)
    const external = spec.dependencies.flatMap((d) => ['--external', d])
    await sh(
      [
        process.execPath,
        'build',
        source,
        '--target',
        'node',
        '--format',
        'esm',
        ...external,
        '--external',
        'bun',
        '--external',
        'bun:sqlite',
        '--external',
        'node:sqlite',
        '--outfile',
        join(out, `${base}.js`)
      ],
      root
    )
    writeFileSync(join(out, `${base}.d.ts`), `export * from './types/${source.replace(/\.ts$/, '.ts')}'\n`)
    exports[path] = { types: `./${base}.d.ts`, default: `./${base}.js` }
  }
  for (const dep of spec.dependencies) cpSync(join(root, 'node_modules', dep), join(out, 'node_modules', dep), { recursive: true, dereference: true })
  const pkg = {
    name: spec.name,
    version: VERSION,
    description: spec.description,
    license: rootPkg.license,
    type: 'module',
    exports,
    dependencies: Object.fromEntries(spec.dependencies.map((d) => [d, rootPkg.dependencies[d]])),
    bundleDependencies: spec.dependencies
  }
  writeFileSync(join(out, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`)
  cpSync(join(root, 'packages', spec.dir, 'README.md'), join(out, 'README.md'))
  if (!values['no-pack']) {
    const file = (await sh(['npm', 'pack', '--silent', '--pack-destination', join(root, 'dist/packages')], out)).trim().split('\n').at(-1)
    console.log(join(root, 'dist/packages', file ?? ''))
  } else console.log(out)
}
