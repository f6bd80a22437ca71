import * as v from 'valibot'
import { toJsonSchema } from '@valibot/to-json-schema'
import type { EventRow } from '../store/events.ts'
import { formatIssues, type Issue, toIssues } from '../model/issues.ts'
import { PermanentError, ValidationError } from '../errors.ts'
import type { Plugin, TypeHandler } from './types.ts'

/**
 * @returns the payload of a row validated against the handler's schema, upcast from an older version if needed
 * @throws PermanentError when no upcaster exists or the payload is invalid: retrying cannot help
 */
export function payloadOf(handler: TypeHandler, row: EventRow): unknown {
  let payload: unknown = JSON.parse(row.payload)
  if (row.version < handler.version) {
    const up = handler.upcast?.[row.version]
    if (up == null) throw new PermanentError(`no upcaster from version ${row.version} to ${handler.version} of ${row.type}`)
    const old = v.safeParse(up.payload, payload)
    if (!old.success) throw new PermanentError(`payload of ${row.type} v${row.version} is invalid: ${formatIssues(old.issues, 'payload').join('; ')}`)
    payload = up.to(old.output)
  }
  const r = v.safeParse(handler.payload, payload)
  if (!r.success) throw new PermanentError(`payload of ${row.type} v${handler.version} is invalid: ${formatIssues(r.issues, 'payload').join('; ')}`)
  return r.output
}

/**
 * Checks a payload about to be published against the plugin that declares its type.
 *
 * @returns the version to publish (given, or the newest declared, else 1) and the issues, paths under `payload`
 */
export function validatePublish(plugins: readonly Plugin[], type: string, version: number | undefined, payload: unknown): { version: number; issues: Issue[] } {
  const handler = plugins.map((p) => p.handles[type]).find((h) => h != null)
  if (handler == null) return { version: version ?? 1, issues: [] }
  const chosen = version ?? handler.version
  if (chosen > handler.version) return { version: chosen, issues: [] }
  const schema = chosen === handler.version ? handler.payload : handler.upcast?.[chosen]?.payload
  if (schema == null) return { version: chosen, issues: [{ path: 'version', message: `no local plugin reads ${type} v${chosen}`, code: 'unknown_version' }] }
  const r = v.safeParse(schema, payload)
  return { version: chosen, issues: r.success ? [] : toIssues(r.issues, 'payload') }
}

/**
 * @returns the JSON Schema of a type's payload, at `version` (default: the newest a plugin declares)
 * @throws ValidationError when no plugin declares that type or version
 */
export function jsonSchemaOf(plugins: readonly Plugin[], type: string, version?: number): object {
  const handler = plugins.map((p) => p.handles[type]).find((h) => h != null)
  if (handler == null) throw new ValidationError(`No loaded plugin declares the event type ${type}`)
  const schema = version == null || version === handler.version ? handler.payload : handler.upcast?.[version]?.payload
  if (schema == null) throw new ValidationError(`No loaded plugin declares version ${version} of ${type} (known: ${[...Object.keys(handler.upcast ?? {}), handler.version].join(', ')})`)
  return toJsonSchema(schema, { errorMode: 'ignore' })
}
