import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { defineVerb } from '../verb.ts'
import { DurationSchema } from '../../config/settings.ts'
import { RUN_SETTINGS, toNodeConfig } from '../../config/catalog.ts'
import { BUILTIN_PLUGINS } from '../../../plugins/mod.ts'
import { resolveSettings } from '../../config/resolve.ts'
import { initDataDir } from '../../datadir/init.ts'
import { dataPaths } from '../../datadir/layout.ts'
import { CairnNode } from '../../node/node.ts'
import { createLogger } from '../../log/logger.ts'
import { workspaceMembers } from '../../../plugins/workspace-access.ts'

const NAMES = ['alpha', 'bravo', 'charlie']

/** The sample story: invitations and revocations, published on different nodes. */
const SCRIPT: Array<{ on: number; type: string; payload: Record<string, string> }> = [
  { on: 0, type: 'workspace.invited', payload: { workspace_id: 'design', invitee: 'ann@example.com', role: 'admin', invited_by: 'boss@example.com' } },
  { on: 1, type: 'workspace.invited', payload: { workspace_id: 'design', invitee: 'bob@example.com', role: 'member', invited_by: 'ann@example.com' } },
  { on: 2, type: 'workspace.invited', payload: { workspace_id: 'ops', invitee: 'cid@example.com', role: 'viewer', invited_by: 'boss@example.com' } },
  { on: 1, type: 'permission.revoked', payload: { workspace_id: 'design', subject: 'ann@example.com', permission: 'admin', reason: 'role change' } },
  { on: 0, type: 'workspace.invited', payload: { workspace_id: 'ops', invitee: 'bob@example.com', role: 'owner', invited_by: 'boss@example.com' } },
  { on: 2, type: 'permission.revoked', payload: { workspace_id: 'design', subject: 'bob@example.com', permission: 'write', reason: 'read-only for now' } }
]

export const demoVerb = defineVerb({
  name: 'demo',
  summary: 'start three nodes in temporary directories, publish sample events on each, and show them arrive and converge',
  usage: '[--duration 30s]',
  settings: [{ name: 'duration', kind: 'string', value: 'DURATION', description: 'how long to spread the sample events over (default 30s)', schema: DurationSchema, default: '30s', inFile: false }],
  details: 'Needs no setup and leaves nothing behind: the nodes listen on 127.0.0.1 only and their directories are removed at the end.',
  async run({ values, out }) {
    const duration = values.duration as number
    const dir = mkdtempSync(join(tmpdir(), 'cairn-demo-'))
    const nodes: CairnNode[] = []
    const started = Date.now()
    try {
      out(`cairn demo: three nodes (${NAMES.join(', ')}) on 127.0.0.1, data in ${dir}`)
      for (let i = 0; i < 3; i++) {
        await initDataDir(join(dir, NAMES[i]), i === 0 ? { newNetwork: true } : { swarmKeyFile: dataPaths(join(dir, NAMES[0])).swarmKey })
        const flags: Record<string, unknown> = { data: join(dir, NAMES[i]), listen: ['/ip4/127.0.0.1/tcp/0'], http: '127.0.0.1:0', 'announce-interval': '1s' }
        if (i > 0) flags.bootstrap = [nodes[0].ipfs.libp2p.getMultiaddrs()[0].toString()]
        const node = new CairnNode(toNodeConfig(resolveSettings(RUN_SETTINGS, flags, {}, {})), { log: createLogger({ level: 'warn' }), plugins: BUILTIN_PLUGINS })
        await node.start()
        nodes.push(node)
      }
      const nameOf = new Map(nodes.map((n, i) => [n.peerId.toString(), NAMES[i]]))
      nodes.forEach((node, i) => {
        node.events.addEventListener('events:ingested', (evt) => {
          for (const e of evt.detail) {
            const from = nameOf.get(e.producer) ?? e.producer.slice(-8)
            const p = e.payload as Record<string, string>
            const who = p.invitee ?? p.subject
            const what = e.type === 'workspace.invited' ? `invites ${who} to ${p.workspace_id} as ${p.role}` : `revokes ${p.permission} of ${who} in ${p.workspace_id}`
            out(
              from === NAMES[i]
                ? `  ${NAMES[i].padEnd(7)} published  #${e.seq} ${what}`
                : `  ${NAMES[i].padEnd(7)} ← ${from.padEnd(7)} #${e.seq} ${what}  (${Date.now() - Date.parse(e.occurred_at)} ms)`
            )
          }
        })
      })
      out('waiting for the nodes to find each other …')
      await until(() => nodes.every((n) => n.ipfs.libp2p.getPeers().length >= 1), 30_000)
      const gap = Math.max(200, Math.floor(duration / SCRIPT.length))
      for (const step of SCRIPT) {
        await nodes[step.on].publish({ type: step.type, payload: step.payload, actor: `${NAMES[step.on]}-backend` })
        await new Promise((resolve) => setTimeout(resolve, gap))
      }
      const total = SCRIPT.length
      await until(() => nodes.every((n) => n.store.events.doneCount() === total), 30_000)
      out('')
      out('the access table, the same on every node:')
      const tables = nodes.map((n) => workspaceMembers(n.store.db))
      for (const r of tables[0]) out(`  ${r.workspace_id.padEnd(8)} ${r.subject.padEnd(18)} ${r.permissions}`)
      const same = tables.every((t) => JSON.stringify(t) === JSON.stringify(tables[0]))
      out(same ? `converged on all three nodes in ${((Date.now() - started) / 1000).toFixed(1)} s` : 'the nodes did NOT converge')
      return same ? 0 : 1
    } finally {
      for (const n of nodes.reverse()) await n.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }
})

async function until(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`the demo timed out after ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}
