import { expect, test } from 'bun:test'
import { copyFileSync, existsSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { initDataDir } from '../src/datadir/init.ts'
import type { CairnNode } from '../src/node/node.ts'
import { eventCount } from './helpers/db.ts'
import { inProcessNode } from './helpers/forge.ts'
import { tempDir, waitFor } from './helpers/process.ts'

const DB_FILES = ['cairn.db', 'cairn.db-wal', 'cairn.db-shm', 'blocks.db', 'blocks.db-wal', 'blocks.db-shm']
function copyDatabases(from: string, to: string): void {
  for (const f of DB_FILES) {
    rmSync(join(to, f), { force: true })
    if (existsSync(join(from, f))) copyFileSync(join(from, f), join(to, f))
  }
}

// The fence opens when a push was read whole, while the head limiter may defer a head over the peer's budget
// (here 1 a second): the own head, pushed after another, must still be judged before the held publish goes on.
// Either of two things keeps it so: the pusher sends it first (HeadExchange's headOf), and the receiver judges
// its own head at once while the fence holds, whatever the order (a pusher of an older build).
test('a restored node whose own head comes after an old head in the push still refuses its held publish', async () => {
  using tmp = tempDir()
  const dirA = join(tmp.path, 'a')
  const backup = join(tmp.path, 'backup')
  const a0 = await initDataDir(dirA, { newNetwork: true })
  await initDataDir(backup, { newNetwork: true })
  let dirB = ''
  // B's head sorts before A's in B's push (signedHeads is ORDER BY producer).
  for (let i = 0; ; i++) {
    dirB = join(tmp.path, `b${i}`)
    const b0 = await initDataDir(dirB, { swarmKeyFile: join(dirA, 'swarm.key') })
    if (b0.peerId < a0.peerId) break
  }
  let b: CairnNode | undefined = await inProcessNode(dirB)
  let a: CairnNode | undefined
  const startA = async (): Promise<CairnNode> => await inProcessNode(dirA, { bootstrap: [b!.ipfs.libp2p.getMultiaddrs()[0].toString()], 'heads-per-second': 1 })
  try {
    await b.publish({ type: 'test.e', payload: { b: 1 } })
    a = await startA()
    await a.publish({ type: 'test.e', payload: { n: 1 } })
    await waitFor('b on a, a on b', () => eventCount(dirB) === 2 && eventCount(dirA) === 2, 30_000)
    await a.stop()
    copyDatabases(dirA, backup)
    a = await startA()
    for (let n = 2; n <= 3; n++) await a.publish({ type: 'test.e', payload: { n } })
    await waitFor('four events on b', () => eventCount(dirB) === 4, 30_000)
    await a.stop()
    const bAddress = b.ipfs.libp2p.getMultiaddrs()[0].toString()
    await b.stop()
    b = undefined
    copyDatabases(backup, dirA)
    a = await inProcessNode(dirA, { bootstrap: [bAddress], 'heads-per-second': 1 })
    const held = a.publish({ type: 'test.e', payload: { n: 4 } }).then(
      (r) => ({ published: r.seq }),
      (err: Error) => ({ refused: err.message })
    )
    b = await inProcessNode(dirB, { bootstrap: [a.ipfs.libp2p.getMultiaddrs()[0].toString()] })
    expect(await held).toEqual({ refused: expect.stringMatching(/own head at seq 3/) })
  } finally {
    await a?.stop()
    await b?.stop()
  }
}, 120_000)
