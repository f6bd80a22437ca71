import { describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { initDataDir } from '../src/datadir/init.ts'
import type { Log } from '../src/log/logger.ts'
import type { CairnNode } from '../src/node/node.ts'
import { inProcessNode } from './helpers/forge.ts'
import { cairn, tempDir, waitFor } from './helpers/process.ts'

describe('a node that holds its own removal', () => {
  test('refuses publishes with 409 removed_member naming the owner that removed it, over HTTP and cairn publish, and publishes again once added back', async () => {
    using tmp = tempDir()
    const dirA = join(tmp.path, 'a')
    const dirB = join(tmp.path, 'b')
    const owner = (await initDataDir(dirA, { newNetwork: true })).peerId
    await initDataDir(dirB, { swarmKeyFile: join(dirA, 'swarm.key'), owners: [owner] })
    let a: CairnNode | undefined
    let b: CairnNode | undefined
    try {
      a = await inProcessNode(dirA)
      b = await inProcessNode(dirB, { bootstrap: [a.ipfs.libp2p.getMultiaddrs()[0].toString()] })
      const nodeB = b
      const self = b.peerId.toString()
      await a.members.add({ peer_id: self })
      await waitFor('b to apply its addition', () => nodeB.members.isMember(self) === true, 30_000)
      expect((await b.publish({ type: 'test.b', payload: { n: 1 } })).seq).toBe(1)

      await a.members.remove(self)
      await waitFor('b to apply its removal', () => nodeB.members.removedAt(self) != null, 30_000)
      const refused = await b.publish({ type: 'test.b', payload: { n: 2 } }).then(
        () => undefined,
        (err: Error) => err
      )
      expect(refused?.name).toBe('RemovedMemberError')

      const token = readFileSync(join(dirB, 'api.token'), 'utf8').trim()
      const res = await fetch(`http://127.0.0.1:${b.http!.port}/v1/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'test.b', payload: { n: 2 } })
      })
      const body = (await res.json()) as { error: { code: string; message: string } }
      expect({ status: res.status, code: body.error.code }).toEqual({ status: 409, code: 'removed_member' })
      expect(body.error.message).toContain(`was removed by ${owner}`)
      expect(body.error.message).toContain(`cairn members add ${self}`)

      const cli = await cairn(['publish', '--type', 'test.b', '--payload', '{"n":2}', '--data', dirB], { runtime: 'bun' })
      expect(cli.code).not.toBe(0)
      expect(cli.stderr).toContain('HTTP 409')
      expect(cli.stderr).toContain(`was removed by ${owner}`)
      // Nothing was committed: the outbox still ends at seq 1.
      expect(b.store.producers.get(self)?.head_seq).toBe(1)

      // Added back, it publishes again.
      await a.members.add({ peer_id: self })
      await waitFor('b to apply its new addition', () => nodeB.members.removedAt(self) == null, 30_000)
      expect((await b.publish({ type: 'test.b', payload: { n: 2 } })).seq).toBe(2)
    } finally {
      await b?.stop()
      await a?.stop()
    }
  }, 120_000)

  test('says it was removed, and not that it holds events of its own after its last valid seq: those it wrote before it held the removal are its own outbox', async () => {
    using tmp = tempDir()
    const dirA = join(tmp.path, 'a')
    const dirB = join(tmp.path, 'b')
    const owner = (await initDataDir(dirA, { newNetwork: true })).peerId
    await initDataDir(dirB, { swarmKeyFile: join(dirA, 'swarm.key'), owners: [owner] })
    const warned: Array<Record<string, unknown>> = []
    const logB: Log = { debug() {}, info() {}, warn: (_m, f = {}) => warned.push(f), error: (_m, f = {}) => warned.push(f), child: () => logB }
    const quick = { 'announce-interval': '1s', 'publish-fence': '0s' }
    let a: CairnNode | undefined
    let b: CairnNode | undefined
    try {
      a = await inProcessNode(dirA, quick)
      b = await inProcessNode(dirB, { ...quick, bootstrap: [a.ipfs.libp2p.getMultiaddrs()[0].toString()] }, logB)
      const self = b.peerId.toString()
      await a.members.add({ peer_id: self })
      const nodeB = b
      await waitFor('b to apply its addition', () => nodeB.members.isMember(self) === true)
      await b.publish({ type: 'test.b', payload: { n: 1 } })
      await waitFor("b's event on a", () => a?.store.producers.get(self)?.processed_seq === 1)

      // Cut off from a, b writes on while a removes it having seen seq 1.
      await b.stop()
      expect((await a.members.remove(self)).change).toEqual({ op: 'remove', peer_id: self, last_seq: 1 })
      b = await inProcessNode(dirB, quick, logB)
      for (let n = 2; n <= 3; n++) await b.publish({ type: 'test.b', payload: { n } })
      await b.ipfs.libp2p.dial(a.ipfs.libp2p.getMultiaddrs()[0])
      const back = b
      await waitFor('b to apply its removal', () => back.members.removedAt(self) != null)

      const s = await back.statusJson()
      expect(s.reasons.filter((r) => r.includes(`event(s) of ${self}`))).toEqual([])
      expect(s.reasons.filter((r) => r.startsWith(`this node was removed by ${owner}`))).toHaveLength(1)
      expect(s.producers.find((p) => p.producer === self)?.kept_after_removal).toBeNull()
      const metrics = await (await fetch(`http://127.0.0.1:${back.http!.port}/metrics`)).text()
      expect(metrics).not.toContain(`cairn_kept_after_removal_events{producer="${self}"}`)
      expect(warned.filter((f) => f.reason === 'kept_after_removal')).toEqual([])
    } finally {
      await b?.stop()
      await a?.stop()
    }
  }, 120_000)
})
