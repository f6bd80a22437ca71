/**
 * How fast a membership change takes effect: four `dist/cairn` processes (owner A, members B and C, reader D),
 * A makes R changes one after another (adds of fresh peer ids, each followed by its removal); for each, the
 * time from A's `POST /v1/members` answer until B, C and D list it (their `GET /v1/members`, polled every 5 ms).
 * Then A removes C, C publishes, and the time until A, B and D have refused C's next head.
 *
 *   bun bench/members.ts            # R=20 changes
 */
import { fakePeerId } from '../test/adversary/helpers.ts'
import { NodeProcess, tempDir, waitFor } from '../test/helpers/process.ts'
import { quantile } from './nodes.ts'

const R = Number(process.env.R ?? 20)

async function call(node: NodeProcess, method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(`http://${node.http}${path}`, {
    method,
    headers: { authorization: `Bearer ${node.token}`, 'content-type': 'application/json' },
    body: body == null ? undefined : JSON.stringify(body)
  })
  return await res.json()
}

/** @returns ms until every node's list satisfies `check`, per node */
async function until(nodes: NodeProcess[], check: (doc: any) => boolean): Promise<number[]> {
  const t0 = performance.now()
  return await Promise.all(
    nodes.map(async (n) => {
      await waitFor(`${n.dir} to apply the change`, async () => check(await call(n, 'GET', '/v1/members')), 30_000, 5)
      return performance.now() - t0
    })
  )
}

async function rejectedNotMember(n: NodeProcess, producer: string): Promise<number> {
  const text = await (await fetch(`http://${n.http}/metrics`)).text()
  const m =
    new RegExp(`cairn_rejected_by_producer_total\\{[^}]*producer="${producer}"[^}]*reason="not_member"[^}]*\\} (\\d+)`).exec(text) ??
    new RegExp(`cairn_rejected_by_producer_total\\{[^}]*reason="not_member"[^}]*producer="${producer}"[^}]*\\} (\\d+)`).exec(text)
  return Number(m?.[1] ?? 0)
}

using tmp = tempDir('cairn-bench-members-')
const a = await NodeProcess.init(tmp.path, 'a')
const owners = [a.peerId]
const [b, c, d] = await Promise.all(['b', 'c', 'd'].map(async (name) => await NodeProcess.init(tmp.path, name, { network: a, owners })))
const all = [a, b, c, d]
try {
  for (const [i, n] of all.entries()) await n.start(all.slice(0, i).flatMap((p) => ['--bootstrap', p.addrs[0]]))
  await waitFor('a full mesh', async () => (await Promise.all(all.map(async (n) => (await n.status()).peers.length))).every((p) => p === 3), 60_000)
  for (const p of [b, c]) await call(a, 'POST', '/v1/members', { peer_id: p.peerId })
  await until([b, c, d], (doc) => doc.members.length === 3)
  const applied: number[] = []
  for (let i = 0; i < R; i++) {
    const x = fakePeerId(1000 + i)
    await call(a, 'POST', '/v1/members', { peer_id: x })
    applied.push(...(await until([b, c, d], (doc) => doc.members.some((m: { peer_id: string }) => m.peer_id === x))))
    await call(a, 'DELETE', `/v1/members/${x}`)
    applied.push(...(await until([b, c, d], (doc) => doc.removed.some((r: { peer_id: string }) => r.peer_id === x))))
  }
  await call(a, 'DELETE', `/v1/members/${c.peerId}`)
  await until([b, c, d], (doc) => doc.removed.some((r: { peer_id: string }) => r.peer_id === c.peerId))
  const before = await Promise.all([a, b, d].map(async (n) => await rejectedNotMember(n, c.peerId)))
  const t0 = performance.now()
  await c.publish({ type: 'bench.after', payload: {} })
  const refused = await Promise.all(
    [a, b, d].map(async (n, i) => {
      await waitFor(`${n.dir} to refuse c`, async () => (await rejectedNotMember(n, c.peerId)) > before[i], 30_000, 5)
      return performance.now() - t0
    })
  )
  const ms = (x: number): string => `${x.toFixed(0)} ms`
  console.log(`change applied on the 3 other nodes (${applied.length} samples): median ${ms(quantile(applied, 0.5))}, p95 ${ms(quantile(applied, 0.95))}, max ${ms(Math.max(...applied))}`)
  console.log(`removed member's next head refused on A, B, D after: ${refused.map(ms).join(', ')}`)
} finally {
  for (const n of all) await n.stop().catch(() => {})
}
