// An external cairn plugin whose state no state key can describe: how many invitations each workspace
// ever had. Every invitation adds one, so no event supersedes another and compaction cannot keep it
// whole; a node that joins after the invitations were pruned loads it from a signed snapshot instead.
// Load it with: cairn run --plugins ./examples/snapshot --snapshot-from <peer ids you trust>
export default ({ v, definePlugin }) =>
  definePlugin({
    name: 'workspace-counter',
    version: '1.0.0',
    handles: { 'workspace.invited': { version: 1, payload: v.object({ workspace_id: v.string() }) } },
    migrations: ['CREATE TABLE workspace_invitations (workspace_id TEXT PRIMARY KEY, n INTEGER NOT NULL)'],
    apply(event, { db }) {
      db.run('INSERT INTO workspace_invitations (workspace_id, n) VALUES (?, 1) ON CONFLICT (workspace_id) DO UPDATE SET n = n + 1', [event.payload.workspace_id])
    }
  })
