import { definePlugin, v, type PluginDb } from '../src/plugins/mod.ts'

const Email = v.pipe(v.string(), v.trim(), v.toLowerCase(), v.email('Invalid email'))
const WorkspaceId = v.pipe(v.string(), v.minLength(1, 'Expected a workspace id'), v.maxLength(200))

/** `workspace.invited` v1: someone was invited into a workspace with a role. */
export const InvitedSchema = v.strictObject({
  workspace_id: WorkspaceId,
  invitee: Email,
  role: v.picklist(['owner', 'admin', 'member', 'viewer'], 'Expected owner, admin, member or viewer'),
  invited_by: Email,
  expires_at: v.optional(v.pipe(v.string(), v.isoTimestamp('Expected an ISO 8601 timestamp')))
})

/** `permission.revoked` v1: a permission of someone in a workspace was taken away. */
export const RevokedSchema = v.strictObject({
  workspace_id: WorkspaceId,
  subject: Email,
  permission: v.picklist(['read', 'write', 'member', 'admin', 'owner'], 'Expected read, write, member, admin or owner'),
  reason: v.optional(v.pipe(v.string(), v.maxLength(1000)))
})

/** What each role grants. A revocation takes away one permission. */
export const ROLE_PERMISSIONS: Record<v.InferOutput<typeof InvitedSchema>['role'], string[]> = {
  viewer: ['read'],
  member: ['read', 'write', 'member'],
  admin: ['read', 'write', 'member', 'admin'],
  owner: ['read', 'write', 'member', 'admin', 'owner']
}

// One row per (workspace, subject, permission), decided by the newest event touching it in the order
// (hlc, producer, event_id): the same on every node, whatever order the events arrived in.
const UPSERT = `INSERT INTO workspace_access (workspace_id, subject, permission, granted, role, invited_by, expires_at, reason, order_key, event_id, producer, hlc)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
  ON CONFLICT (workspace_id, subject, permission) DO UPDATE SET
    granted = excluded.granted, role = excluded.role, invited_by = excluded.invited_by, expires_at = excluded.expires_at,
    reason = excluded.reason, order_key = excluded.order_key, event_id = excluded.event_id, producer = excluded.producer, hlc = excluded.hlc
  WHERE excluded.order_key > workspace_access.order_key`

const orderKey = (e: { hlc: string; producer: string; event_id: string }): string => `${e.hlc}|${e.producer}|${e.event_id}`

/** @returns who has which permissions in which workspace, from the plugin's `workspace_members` view in `db` */
export function workspaceMembers(db: PluginDb): Array<{ workspace_id: string; subject: string; permissions: string }> {
  return db.all<{ workspace_id: string; subject: string; permissions: string }>('SELECT workspace_id, subject, permissions FROM workspace_members ORDER BY workspace_id, subject')
}

/** Keeps who has what access to which workspace, from invitations and revocations. */
export default definePlugin({
  name: 'workspace-access',
  version: '1.0.0',
  migrations: [
    `CREATE TABLE workspace_access (
       workspace_id TEXT NOT NULL,
       subject TEXT NOT NULL,
       permission TEXT NOT NULL,
       granted INTEGER NOT NULL,
       role TEXT,
       invited_by TEXT,
       expires_at TEXT,
       reason TEXT,
       order_key TEXT NOT NULL,
       event_id TEXT NOT NULL,
       producer TEXT NOT NULL,
       hlc TEXT NOT NULL,
       PRIMARY KEY (workspace_id, subject, permission)
     );
     CREATE VIEW workspace_members AS
       SELECT workspace_id, subject, group_concat(permission, ',') AS permissions
       FROM (SELECT * FROM workspace_access WHERE granted = 1 ORDER BY permission)
       GROUP BY workspace_id, subject;`
  ],
  // Each row of workspace_access is decided by the newest event that touches its (workspace, subject,
  // permission): those are the keys, so that housekeeping keeps exactly what a newcomer needs.
  handles: {
    'workspace.invited': {
      version: 1,
      payload: InvitedSchema,
      keys: (p) => ROLE_PERMISSIONS[p.role].map((permission) => [p.workspace_id, p.invitee, permission]),
      apply(event, { db }) {
        const p = event.payload
        for (const permission of ROLE_PERMISSIONS[p.role]) {
          db.run(UPSERT, [p.workspace_id, p.invitee, permission, 1, p.role, p.invited_by, p.expires_at ?? null, null, orderKey(event), event.event_id, event.producer, event.hlc])
        }
      }
    },
    'permission.revoked': {
      version: 1,
      payload: RevokedSchema,
      keys: (p) => [[p.workspace_id, p.subject, p.permission]],
      apply(event, { db }) {
        const p = event.payload
        db.run(UPSERT, [p.workspace_id, p.subject, p.permission, 0, null, null, null, p.reason ?? null, orderKey(event), event.event_id, event.producer, event.hlc])
      }
    }
  }
})
