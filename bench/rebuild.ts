/**
 * How long `cairn plugins rebuild` takes: the built-in workspace-access plugin applies N invitations
 * (3 rows each, as member), then rebuilds them into fresh tables in one transaction, through the test
 * kit's in-memory database and the host's own runner.
 *
 *   bun bench/rebuild.ts              # N=20000
 *   N=100000 bun bench/rebuild.ts
 */
import { testPlugin } from '../src/plugins/testkit.ts'
import workspaceAccess from '../plugins/workspace-access.ts'

const N = Number(process.env.N ?? 20_000)
await using t = await testPlugin(workspaceAccess)
const started = performance.now()
for (let i = 0; i < N; i += 1000) {
  await t.apply(
    Array.from({ length: Math.min(1000, N - i) }, (_, j) => ({
      type: 'workspace.invited',
      payload: { workspace_id: `w${(i + j) % 100}`, invitee: `u${i + j}@example.com`, role: 'member', invited_by: 'a@example.com' }
    }))
  )
}
const applied = performance.now() - started
const rebuildStarted = performance.now()
const n = await t.rebuild()
const rebuilt = performance.now() - rebuildStarted
const rows = t.get<{ n: number }>('SELECT count(*) AS n FROM workspace_access')?.n
console.log(JSON.stringify({ events: N, rows, apply_ms: Math.round(applied), rebuild_ms: Math.round(rebuilt), rebuilt: n, rebuild_events_per_s: Math.round(n / (rebuilt / 1000)) }))
