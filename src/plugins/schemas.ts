import * as v from 'valibot'
import { toJsonSchema } from '@valibot/to-json-schema'
import type { EventRow } from '../store/events.ts'
import { formatIssues, type Issue, toIssues } from '../model/issues.ts'
import { PermanentError, ValidationError } from '../errors.ts'
import type { Plugin, TypeHandler } from './types.ts'

/**
 * Validates a payload as a reader that tolerates what it does not know: fields a strict schema does not
 * declare (added by a newer plugin within the same version) are dropped, not refused, so that adding an
 * optional field needs no lockstep upgrade. Everything the schema declares is checked as written.
 *
 * @returns the parse result of `schema` on `payload` without its unknown keys
 */
export function readTolerantly(schema: v.GenericSchema, payload: unknown): v.SafeParseResult<v.GenericSchema> {
  const first = v.safeParse(schema, payload)
  if (first.success) return first
  const unknown = first.issues.filter((i) => i.type === 'strict_object' && i.expected === 'never' && (i.path?.length ?? 0) > 0)
  if (unknown.length === 0) return first
  const copy: unknown = structuredClone(payload)
  for (const issue of unknown) {
    const path = (issue.path ?? []).map((item) => item.key)
    let at: unknown = copy
    for (const key of path.slice(0, -1)) at = at instanceof Object ? (at as Record<PropertyKey, unknown>)[key as PropertyKey] : undefined
    if (at instanceof Object) delete (at as Record<PropertyKey, unknown>)[path.at(-1) as PropertyKey]
  }
  return v.safeParse(schema, copy)
}

/**
 * @returns the payload of a row validated against the handler's schema (tolerating fields it does not
 * know), upcast from an older version if needed
 * @throws PermanentError when no upcaster exists or the payload is invalid: retrying cannot help
 */
export function payloadOf(handler: TypeHandler, row: EventRow): unknown {
  let payload: unknown = JSON.parse(row.payload)
  if (row.version < handler.version) {
    const up = handler.upcast?.[row.version]
    if (up == null) throw new PermanentError(`no upcaster from version ${row.version} to ${handler.version} of ${row.type}`)
    const old = readTolerantly(up.payload, payload)
    if (!old.success) throw new PermanentError(`payload of ${row.type} v${row.version} is invalid: ${formatIssues(old.issues, 'payload').join('; ')}`)
    payload = up.to(old.output)
    refuseThenable(payload, `the upcaster of ${row.type} v${row.version} returned a Promise: upcasters must be synchronous`)
  }
  const r = readTolerantly(handler.payload, payload)
  if (!r.success) throw new PermanentError(`payload of ${row.type} v${handler.version} is invalid: ${formatIssues(r.issues, 'payload').join('; ')}`)
  return r.output
}

/**
 * Refuses what a plugin's synchronous function (apply, keys, an upcaster) returned when it is a Promise or
 * another thenable (what a plain function wrapping an async one returns): its failure is not left unhandled.
 *
 * @throws PermanentError with `message` when `x` is thenable
 */
export function refuseThenable(x: unknown, message: string): void {
  if (x == null || (typeof x !== 'object' && typeof x !== 'function') || typeof (x as { then?: unknown }).then !== 'function') return
  ;(x as PromiseLike<unknown>).then(undefined, () => {})
  throw new PermanentError(message)
}

/** Which types a node publishes though no local plugin reads them: all (true), none (false) or these. */
export type UnknownTypes = boolean | readonly string[]

/**
 * Checks a payload about to be published, strictly, against the plugin that declares its type. A publish
 * without a version is version 1 of its type, always: a new version is never picked for a client that did
 * not ask for it. A type or version no local plugin reads is refused unless `allowUnknown` lets it through.
 *
 * @returns the version to publish and the issues, paths under `payload` (none when it may be published)
 */
export function validatePublish(plugins: readonly Plugin[], type: string, version: number | undefined, payload: unknown, allowUnknown: UnknownTypes = false): { version: number; issues: Issue[] } {
  const chosen = version ?? 1
  const allowed = allowUnknown === true || (Array.isArray(allowUnknown) && allowUnknown.includes(type))
  const handlers = plugins.map((p) => p.handles[type]).filter((h) => h != null)
  if (handlers.length === 0) {
    if (allowed) return { version: chosen, issues: [] }
    const known = [...new Set(plugins.flatMap((p) => Object.keys(p.handles)))].sort()
    return {
      version: chosen,
      issues: [
        {
          path: 'type',
          message: `no local plugin handles ${type} (known types: ${known.join(', ')}); a node that should publish types only other nodes handle runs with --allow-unknown-types`,
          code: 'unknown_type'
        }
      ]
    }
  }
  const readable = [...new Set(handlers.flatMap((h) => [h.version, ...Object.keys(h.upcast ?? {}).map(Number)]))].sort((a, b) => a - b)
  // The plugin that reads the chosen version natively decides, else one that upcasts from it.
  const schema = handlers.find((h) => h.version === chosen)?.payload ?? handlers.map((h) => h.upcast?.[chosen]?.payload).find((s) => s != null)
  if (schema == null) {
    if (allowed) return { version: chosen, issues: [] }
    return {
      version: chosen,
      issues: [
        {
          path: 'version',
          message: `no local plugin reads ${type} v${chosen} (known versions: ${readable.join(', ')})${version == null ? '; a publish without a version is v1: pass the version' : ''}`,
          code: 'unknown_version'
        }
      ]
    }
  }
  const r = v.safeParse(schema, payload)
  if (r.success) return { version: chosen, issues: [] }
  const issues = toIssues(r.issues, 'payload')
  if (version == null) {
    // A payload of a newer version published without one is read as v1: say so rather than only what v1 lacks.
    const newer = handlers
      .filter((h) => h.version > chosen && v.is(h.payload, payload))
      .map((h) => h.version)
      .sort((a, b) => b - a)[0]
    if (newer != null) issues.unshift({ path: 'version', message: `a publish without a version is v1, and this payload is a valid v${newer}: pass "version": ${newer}`, code: 'required' })
  }
  return { version: chosen, issues }
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
