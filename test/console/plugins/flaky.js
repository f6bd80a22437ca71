// A test plugin for the console tests: a test.flaky event whose payload names a file fails until that file
// exists, so it is dead-lettered after its attempts and applies once the file is there. It counts applies.
import { existsSync } from 'node:fs'

export default ({ v, definePlugin }) =>
  definePlugin({
    name: 'flaky',
    version: '1.0.0',
    handles: { 'test.flaky': { version: 1, payload: v.object({ cure: v.string() }) } },
    migrations: ['CREATE TABLE flaky_applied (event_id TEXT PRIMARY KEY, n INTEGER NOT NULL)'],
    apply(event, { db }) {
      if (!existsSync(event.payload.cure)) throw new Error(`not cured yet: ${event.payload.cure} is missing`)
      db.run('INSERT INTO flaky_applied (event_id, n) VALUES (?, 1) ON CONFLICT (event_id) DO UPDATE SET n = n + 1', [event.event_id])
    }
  })
