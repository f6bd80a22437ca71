// An external cairn plugin: it counts how often each workspace.invited event was applied.
// Load it with: cairn run --plugins ./examples
// It needs no node_modules: cairn passes valibot (v) and definePlugin in.
export default ({ v, definePlugin }) =>
  definePlugin({
    name: 'apply-counter',
    version: '1.0.0',
    handles: { 'workspace.invited': { version: 1, payload: v.unknown() } },
    migrations: ['CREATE TABLE apply_counter (event_id TEXT PRIMARY KEY, n INTEGER NOT NULL)'],
    apply(event, { db }) {
      db.run('INSERT INTO apply_counter (event_id, n) VALUES (?, 1) ON CONFLICT(event_id) DO UPDATE SET n = n + 1', [event.event_id])
    }
  })
