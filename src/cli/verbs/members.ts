import { defineVerb } from '../verb.ts'
import { SETTINGS } from '../../config/catalog.ts'
import { OPTIONS } from '../options.ts'
import { callNode, nodeAnswerError, type ErrorBody } from '../client.ts'
import { UsageError } from '../../errors.ts'
import type { MembersDocument } from '../../members/membership.ts'
import { readFileSync } from 'node:fs'
import { dataPaths } from '../../datadir/layout.ts'
import { writeJoinFile } from '../../datadir/joinFile.ts'
import { readRunInfo } from '../../datadir/runInfo.ts'
import { OWNERS_KEY } from '../../model/members.ts'
import { openNodeStore } from './bus.ts'

const USAGE = 'add PEER_ID [--name NAME] [--role member|owner]  |  remove PEER_ID  |  list [--json]  |  join-file FILE   [--data DIR]'

/** @returns the HTTP answer's body, or a NodeAnswerError with the node's message and the status */
function answer<T>(res: { status: number; body: T & ErrorBody }, ok: number[]): T {
  if (!ok.includes(res.status)) throw nodeAnswerError(res)
  return res.body
}

export const membersVerb = defineVerb({
  name: 'members',
  summary: 'add, remove or list the members who may write (against the running node; changes need an owner)',
  usage: USAGE,
  settings: [SETTINGS.data, OPTIONS.name, OPTIONS.role, OPTIONS.json],
  positionals: true,
  details: [
    "add and remove publish a signed cairn.members change from this node, which must be an owner; every node applies it when it arrives, with no restart. Once the network has had a change, only owners' and members' heads are accepted.",
    "remove records the member's last seq this node has seen: its events up to it stay valid everywhere, later ones are refused on every node.",
    'add --role owner lets the member change the membership too. add with --role member (the default) on another owner demotes it: a removal and an add in one commit, so that its changes after its last seq this node has seen take no effect, whatever their stamps. To rename an owner, give --role owner.',
    "list prints each member: peer id, name, role, who added it and when, whether this node is connected to it; then the removed ones, and the owners' changes that took no effect, with why (the last 20).",
    "join-file writes FILE (mode 0600, never over an existing file) for cairn init --join on a new node: the swarm key, the founding owners, and this node's addresses while it runs as peers to connect to. It holds the swarm key: hand it over a secure channel. Then add the new node's peer id with cairn members add."
  ].join('\n'),
  async run({ values, positionals, out }) {
    const dir = values.data as string
    const [sub, peer, ...extra] = positionals
    if (extra.length > 0) throw new UsageError(`unexpected argument ${extra[0]}; usage: cairn members ${USAGE}`)
    if (sub === 'list') {
      if (peer != null) throw new UsageError(`cairn members list takes no PEER_ID; usage: cairn members ${USAGE}`)
      const doc = answer(await callNode<MembersDocument>(dir, 'GET', '/v1/members'), [200])
      if (values.json === true) {
        out(JSON.stringify(doc))
        return 0
      }
      out(
        `membership from ${doc.source === 'changes' ? "owners' changes" : doc.source === 'setting' ? 'the members setting' : 'nowhere: every holder of the swarm key may write'}${doc.self_is_owner ? ' (this node is an owner)' : ''}`
      )
      out('  peer id                                               role    name                  added by   added at                  connected')
      for (const m of doc.members) {
        out(
          `  ${m.peer_id.padEnd(52)}  ${m.role.padEnd(6)}  ${(m.name ?? '-').padEnd(20)}  ${m.added_by != null ? `…${m.added_by.slice(-7)}` : doc.source === 'setting' ? 'setting ' : 'founder '}  ${(m.added_at ?? '-').padEnd(24)}  ${m.self ? 'self' : m.connected ? 'yes' : 'no'}`
        )
      }
      for (const r of doc.removed) out(`  ${r.peer_id.padEnd(52)}  removed by …${r.removed_by.slice(-7)} at ${r.removed_at}; events after seq ${r.last_seq} refused`)
      const refused = doc.refused ?? []
      if (refused.length > 0) {
        const total = doc.refused_total ?? refused.length
        out(`changes that took no effect: ${total}${total > refused.length ? `, the last ${refused.length}` : ''}`)
        for (const c of refused) out(`  …${c.producer.slice(-7)} seq ${c.seq} (${c.event_id}): ${c.reason}: ${c.detail}`)
      }
      return 0
    }
    if (sub === 'join-file') {
      if (peer == null) throw new UsageError(`cairn members join-file needs the FILE to write; usage: cairn members ${USAGE}`)
      const written = await joinFileOf(dir, peer)
      out(JSON.stringify({ file: peer, owners: written.owners, bootstrap: written.bootstrap }))
      return 0
    }
    if (sub !== 'add' && sub !== 'remove') throw new UsageError(`cairn members needs add, remove, list or join-file${sub != null ? ` (not "${sub}")` : ''}; usage: cairn members ${USAGE}`)
    if (peer == null) throw new UsageError(`cairn members ${sub} needs a PEER_ID; usage: cairn members ${USAGE}`)
    if (sub === 'remove' && (values.name != null || values.role != null)) throw new UsageError('cairn members remove takes no --name or --role')
    const res =
      sub === 'add'
        ? answer(await callNode(dir, 'POST', '/v1/members', { peer_id: peer, name: values.name, role: values.role }), [201])
        : answer(await callNode(dir, 'DELETE', `/v1/members/${encodeURIComponent(peer)}`), [200])
    out(JSON.stringify(res))
    return 0
  }
})

/** Writes a join file from a data directory: its swarm key, the founders it records, and its running addresses. */
async function joinFileOf(dir: string, path: string): Promise<{ owners: string[]; bootstrap: string[] }> {
  const store = await openNodeStore(dir, { onlyReads: true })
  let owners: string[]
  try {
    owners = JSON.parse(store.meta.get(OWNERS_KEY) ?? '[]') as string[]
  } finally {
    store.close()
  }
  if (owners.length === 0) throw new UsageError(`${dir} records no owners: make the network with cairn init --new-network, or record its founders with cairn init --data ${dir} --owner PEER_ID`)
  const info = readRunInfo(dir)
  const bootstrap = (info?.addrs ?? []).map((a) => (a.includes('/p2p/') ? a : `${a}/p2p/${info?.peer_id}`))
  writeJoinFile(path, { swarmKey: readFileSync(dataPaths(dir).swarmKey, 'utf8'), owners, bootstrap })
  return { owners, bootstrap }
}
