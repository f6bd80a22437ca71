import { describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { initDataDir } from '../src/datadir/init.ts'
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
})
