import * as v from 'valibot'
import { EventTypeSchema } from '../model/envelope.ts'
import { formatIssues } from '../model/issues.ts'
import { ValidationError } from '../errors.ts'
import { VERSION } from '../version.ts'
import { isReservedType } from '../model/members.ts'
import { PluginNameSchema, RESERVED_TYPE_MESSAGE } from './load.ts'

/** The files `cairn plugins new` writes: a plugin, its test, and the settings to type-check and run them. */
export interface Scaffold {
  /** file name → content; written only where no such file exists */
  files: Record<string, string>
  /** package.json, merged into an existing one (its own fields win, scripts and dependencies are added) */
  packageJson: PackageJson
}

/** The parts of package.json the scaffold writes. */
export interface PackageJson {
  name?: string
  private?: boolean
  type?: string
  scripts?: Record<string, string>
  dependencies?: Record<string, string>
  devDependencies?: Record<string, string>
  [key: string]: unknown
}

/**
 * @returns a plugin named `name` that keeps one row per `type` event in a table of its own, its test (run
 * with `bun test`), a tsconfig.json for plain `tsc --noEmit`, and a package.json
 * @throws ValidationError naming the bad name or type
 */
export function scaffoldPlugin(name: string, type: string): Scaffold {
  const n = v.safeParse(PluginNameSchema, name)
  if (!n.success) throw new ValidationError(`Invalid plugin name ${JSON.stringify(name)}: ${formatIssues(n.issues).join('; ')}`)
  const t = v.safeParse(EventTypeSchema, type)
  if (!t.success) throw new ValidationError(`Invalid event type ${JSON.stringify(type)}: ${formatIssues(t.issues).join('; ')}`)
  // The loader refuses a plugin that declares a reserved type: the plugin written would never load.
  if (isReservedType(type)) throw new ValidationError(`Invalid event type ${JSON.stringify(type)}: ${RESERVED_TYPE_MESSAGE}`)
  // An SQL name: the plugin's name with _ for . and -, and never starting with a digit.
  const table = `${/^[0-9]/.test(name) ? 'p_' : ''}${name.replace(/[^a-z0-9_]/g, '_')}_rows`
  const plugin = `import { definePlugin, v } from '@cairn/plugin'

/**
 * \`${type}\` v1. Strict: publishing refuses fields it does not declare, while applying tolerates them.
 * Add optional fields freely; a required or changed one is a new version (docs/plugins.md).
 */
export const Payload = v.strictObject({
  id: v.pipe(v.string(), v.minLength(1, 'Expected an id')),
  note: v.optional(v.string())
})

/**
 * One row per event: every event is state of its own, so the type declares no \`keys\` and its events follow
 * plain retention; a node that joins after they were pruned starts from a trusted snapshot (--snapshot-from)
 * or at the retention horizon. Where rows are state per key (the newest event wins), declare
 * \`keys: (payload) => [...]\` beside \`apply\`, and housekeeping keeps the newest event of every key for
 * late joiners (docs/plugins.md, Compaction).
 */
export default definePlugin({
  name: '${name}',
  version: '0.1.0',
  handles: {
    '${type}': {
      version: 1,
      payload: Payload,
      apply(event, { db }) {
        // Keyed by (producer, event_id): an event_id is unique only within its producer.
        db.run('INSERT INTO ${table} (producer, event_id, id, note, hlc) VALUES (?, ?, ?, ?, ?)', [event.producer, event.event_id, event.payload.id, event.payload.note ?? null, event.hlc])
      }
    }
  },
  migrations: ['CREATE TABLE ${table} (producer TEXT NOT NULL, event_id TEXT NOT NULL, id TEXT NOT NULL, note TEXT, hlc TEXT NOT NULL, PRIMARY KEY (producer, event_id))']
})
`
  const test = `import { expect, test } from 'bun:test'
import { testPlugin } from '@cairn/plugin/test'
import plugin from './${name}.ts'

test('${name} keeps one row per ${type} event, applied exactly once', async () => {
  await using t = await testPlugin(plugin)
  await t.apply([
    { type: '${type}', payload: { id: 'a', note: 'first' } },
    { type: '${type}', payload: { id: 'b' }, producer: 'bob' }
  ])
  expect(await t.redeliver()).toBe(0)
  expect(t.all('SELECT id, note FROM ${table} ORDER BY id')).toEqual([
    { id: 'a', note: 'first' },
    { id: 'b', note: null }
  ])
})

test('${name} dead-letters a payload without an id, naming the field', async () => {
  await using t = await testPlugin(plugin)
  await t.apply({ type: '${type}', payload: { note: 'no id' } })
  expect(t.deadLetters().map((d) => d.error)).toEqual([expect.stringContaining('payload.id')])
})
`
  const tsconfig = {
    compilerOptions: {
      target: 'ES2022',
      lib: ['ES2022', 'ESNext.Disposable', 'DOM'],
      module: 'ESNext',
      moduleResolution: 'bundler',
      types: ['bun'],
      strict: true,
      noEmit: true,
      allowImportingTsExtensions: true,
      verbatimModuleSyntax: true,
      skipLibCheck: true
    }
  }
  return {
    files: { [`${name}.ts`]: plugin, [`${name}.test.ts`]: test, 'tsconfig.json': `${JSON.stringify(tsconfig, null, 2)}\n` },
    packageJson: {
      name,
      private: true,
      type: 'module',
      scripts: { test: 'bun test', typecheck: 'tsc --noEmit' },
      dependencies: { '@cairn/plugin': `^${VERSION}` },
      devDependencies: { '@types/bun': '^1.2.0', bun: '^1.2.0', typescript: '^5.6.0' }
    }
  }
}

/** @returns `existing` with the scaffold's fields added where it has none: its own values win */
export function mergePackageJson(existing: PackageJson, scaffold: PackageJson): PackageJson {
  const out: PackageJson = { ...scaffold, ...existing }
  for (const key of ['scripts', 'dependencies', 'devDependencies'] as const) out[key] = { ...scaffold[key], ...existing[key] }
  return out
}
