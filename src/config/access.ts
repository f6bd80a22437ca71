import * as v from 'valibot'
import { readFileSync } from 'node:fs'
import { isAbsolute, join } from 'node:path'
import { ConfigError } from '../errors.ts'
import { PeerIdSchema } from '../model/envelope.ts'
import { formatIssues } from '../model/issues.ts'

const MembersSchema = v.array(v.union([PeerIdSchema, v.strictObject({ peer_id: PeerIdSchema, name: v.optional(v.pipe(v.string(), v.maxLength(100))) })]))
const PolicySchema = v.record(v.string(), v.array(PeerIdSchema))

/** Who may write: members (whose heads are accepted) and, per event type, the producers allowed to emit it. */
export interface AccessRules {
  /** peer id → display name; undefined when every holder of the swarm key may write */
  members?: Map<string, string | undefined>
  /** event type → allowed producers */
  policy: Map<string, Set<string>>
}

function fromFileOrValue(setting: string, value: unknown, dataDir: string): unknown {
  if (typeof value !== 'string') return value
  const path = isAbsolute(value) ? value : join(dataDir, value)
  try {
    return JSON.parse(readFileSync(path, 'utf8'))
  } catch (err) {
    throw new ConfigError(`Invalid setting ${setting}: cannot read ${path}: ${(err as Error).message}`)
  }
}

/**
 * Reads the members list and the producer policy (inline in config.json, or from the files they name,
 * relative to the data directory).
 *
 * @throws ConfigError naming the setting and the bad entry
 */
export function loadAccessRules(members: unknown, policy: unknown, dataDir: string): AccessRules {
  const rules: AccessRules = { policy: new Map() }
  if (members != null) {
    const r = v.safeParse(MembersSchema, fromFileOrValue('members', members, dataDir))
    if (!r.success) throw new ConfigError(`Invalid setting members: ${formatIssues(r.issues).join('; ')}`)
    rules.members = new Map(r.output.map((m) => (typeof m === 'string' ? [m, undefined] : [m.peer_id, m.name])))
  }
  if (policy != null) {
    const r = v.safeParse(PolicySchema, fromFileOrValue('policy', policy, dataDir))
    if (!r.success) throw new ConfigError(`Invalid setting policy: ${formatIssues(r.issues).join('; ')}`)
    for (const [type, peers] of Object.entries(r.output)) rules.policy.set(type, new Set(peers))
  }
  return rules
}
