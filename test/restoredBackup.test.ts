import { describe, expect, test } from 'bun:test'
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { initDataDir } from '../src/datadir/init.ts'
import type { CairnNode } from '../src/node/node.ts'
import type { Log } from '../src/log/logger.ts'
import { eventCount, query } from './helpers/db.ts'
import { inProcessNode, newInProcessNode } from './helpers/forge.ts'
import { tempDir, waitFor } from './helpers/process.ts'

const DB_FILES = ['cairn.db', 'cairn.db-wal', 'cairn.db-shm', 'blocks.db', 'blocks.db-wal', 'blocks.db-shm']

/** Copies the database files of a stopped node's directory `from` into `to` (a backup, or its restore), removing those `from` lacks. */
function copyDatabases(from: string, to: string): void {
  for (const f of DB_FILES) {
    rmSync(join(to, f), { force: true })
    if (existsSync(join(from, f))) copyFileSync(join(from, f), join(to, f))
  }
}

/**
 * Data directories of a node A and a peer B of its network (B started), and one to back A's databases up into.
 *
 * @returns them, and how to start A bootstrapped to B
 */
async function pair(parent: string): Promise<{ dirA: string; dirB: string; backup: string; b: CairnNode; startA: () => Promise<CairnNode> }> {
  const dirA = join(parent, 'a')
  const dirB = join(parent, 'b')
  const backup = join(parent, 'backup')
  await initDataDir(dirA, { newNetwork: true })
  await initDataDir(dirB, { swarmKeyFile: join(dirA, 'swarm.key') })
  await initDataDir(backup, { newNetwork: true })
  const b = await inProcessNode(dirB)
  return { dirA, dirB, backup, b, startA: async () => await inProcessNode(dirA, { bootstrap: [b.ipfs.libp2p.getMultiaddrs()[0].toString()] }) }
}

/** A publishes seq 1, its databases are backed up into `backup`, then it publishes seqs 2 and 3; B holds all three, A is stopped. */
async function backUpThenPublishOn(startA: () => Promise<CairnNode>, dirA: string, dirB: string, backup: string): Promise<void> {
  let a = await startA()
  await a.publish({ type: 'test.e', payload: { n: 1 } })
  await waitFor('the first event on b', () => eventCount(dirB) === 1, 30_000)
  await a.stop()
  copyDatabases(dirA, backup)
  a = await startA()
  try {
    for (let n = 2; n <= 3; n++) await a.publish({ type: 'test.e', payload: { n } })
    await waitFor('three events on b', () => eventCount(dirB) === 3, 30_000)
  } finally {
    await a.stop()
  }
}

describe('a node whose cairn.db is behind what its producer published', () => {
  test('restored from a backup of its last publish, it publishes on though it re-signed that seq after the backup (a snapshot): no seq is reused', async () => {
    using tmp = tempDir()
    const { dirA, dirB, backup, b, startA } = await pair(tmp.path)
    let a: CairnNode | undefined
    try {
      a = await startA()
      for (let n = 1; n <= 2; n++) await a.publish({ type: 'test.e', payload: { n } })
      await waitFor('two events on b', () => eventCount(dirB) === 2, 30_000)
      await a.stop()
      copyDatabases(dirA, backup)
      a = await startA()
      const self = a.peerId.toString()
      const rootOnB = (): string | undefined => b.store.producers.get(self)?.head_root ?? undefined
      const before = rootOnB()
      // A snapshot signs seq 2 again, with a root the backup never recorded.
      expect((await a.writeSnapshots()).length).toBeGreaterThan(0)
      await a.announceAll()
      await waitFor("b to hold a's re-signed head", () => rootOnB() !== before, 30_000)
      await a.stop()
      copyDatabases(backup, dirA)
      a = await startA()
      const node = a
      // It hears its own head at seq 2 from b, and publishes seq 3, which b takes.
      await waitFor('a to hear its own head from b', async () => (await node.metrics.headsReceived.get()).values.some((v) => v.labels.result === 'old' && v.value > 0), 30_000)
      expect((await a.statusJson()).reasons.filter((r) => r.includes('own head'))).toEqual([])
      expect((await a.publish({ type: 'test.e', payload: { n: 3 } })).seq).toBe(3)
      await waitFor('the third event on b', () => eventCount(dirB) === 3, 30_000)
    } finally {
      await a?.stop()
      await b.stop()
    }
  }, 120_000)
  test('restored from an older backup, it refuses to publish (409 producer_diverged) once a peer holds its newer head, and says why; a missing cairn.db stops the start', async () => {
    using tmp = tempDir()
    const { dirA, dirB, backup, b, startA } = await pair(tmp.path)
    let a: CairnNode | undefined
    try {
      await backUpThenPublishOn(startA, dirA, dirB, backup)
      a = undefined

      // The backup comes back: A's outbox ends at seq 1, while B holds A's head at seq 3.
      copyDatabases(backup, dirA)
      a = await startA()
      const node = a
      await waitFor('a to hear its own newer head', async () => (await node.statusJson()).reasons.some((r) => r.includes('own head at seq 3')), 30_000)
      const status = await a.statusJson()
      expect(status.verdict).toBe('degraded')
      await expect(a.publish({ type: 'test.e', payload: { n: 4 } })).rejects.toThrow(/a peer holds this node's own head at seq 3, but its outbox ends at seq 1/)
      const token = readFileSync(join(dirA, 'api.token'), 'utf8').trim()
      const r = await fetch(`http://127.0.0.1:${a.http!.port}/v1/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'test.e', payload: { n: 4 } })
      })
      expect({ status: r.status, code: ((await r.json()) as { error: { code: string } }).error.code }).toEqual({ status: 409, code: 'producer_diverged' })
      expect(eventCount(dirA)).toBe(1)
      await a.stop()
      a = undefined

      // Without cairn.db the node does not start (an empty one would publish from seq 1), and makes none.
      for (const f of ['cairn.db', 'cairn.db-wal', 'cairn.db-shm']) rmSync(join(dirA, f), { force: true })
      await expect(newInProcessNode(dirA).start()).rejects.toThrow(/cairn\.db is missing: it holds this node's outbox/)
      // Nor does an init run again (a deploy script's) make one.
      await expect(initDataDir(dirA, { newNetwork: true })).rejects.toThrow(/cairn\.db is missing/)
      expect(existsSync(join(dirA, 'cairn.db'))).toBe(false)
    } finally {
      await a?.stop()
      await b.stop()
    }
  }, 120_000)
  test('restored from an older backup while its peers are down, its first publish is held until a peer pushes its heads, then refused (409), not acknowledged and lost', async () => {
    using tmp = tempDir()
    const { dirA, dirB, backup, b, startA } = await pair(tmp.path)
    let a: CairnNode | undefined
    let b2: CairnNode | undefined
    try {
      await backUpThenPublishOn(startA, dirA, dirB, backup)
      a = undefined
      const bAddress = b.ipfs.libp2p.getMultiaddrs()[0].toString()
      await b.stop()

      // A comes back from the backup (its outbox ends at seq 1) while B, which holds its head at seq 3, is down.
      copyDatabases(backup, dirA)
      a = await inProcessNode(dirA, { bootstrap: [bAddress] })
      const held = a.publish({ type: 'test.e', payload: { n: 4 } }).then(
        (r) => ({ published: r.seq }),
        (err: Error) => ({ refused: err.message })
      )
      // B comes back and connects to A: its push hands A its own newer head.
      b2 = await inProcessNode(dirB, { bootstrap: [a.ipfs.libp2p.getMultiaddrs()[0].toString()] })
      expect(await held).toEqual({ refused: expect.stringMatching(/a peer holds this node's own head at seq 3, but its outbox ends at seq 1/) })
      expect(eventCount(dirA)).toBe(1)
    } finally {
      await a?.stop()
      await b2?.stop()
      await b.stop()
    }
  }, 120_000)

  test('with no peer pushing, publishes are held for --publish-fence after the start, then go on; a node with no peer to reach publishes at once', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'a')
    await initDataDir(dir, { newNetwork: true })
    // A bootstrap peer nobody listens on (port 1): nothing will push.
    const nobody = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    let a: CairnNode | undefined
    try {
      a = await inProcessNode(dir, { bootstrap: [`/ip4/127.0.0.1/tcp/1/p2p/${nobody}`], 'publish-fence': '2s' })
      const started = performance.now()
      expect((await a.publish({ type: 'test.e', payload: { n: 1 } })).seq).toBe(1)
      expect(performance.now() - started).toBeGreaterThan(1500)
      await a.stop()
      a = undefined

      // Without a bootstrap peer and with none met before, nothing is held.
      const other = join(tmp.path, 'b')
      await initDataDir(other, { newNetwork: true })
      a = await inProcessNode(other, { 'publish-fence': '20s' })
      expect((await a.publish({ type: 'test.e', payload: { n: 1 } })).seq).toBe(1)
    } finally {
      await a?.stop()
    }
  }, 120_000)

  test("an effect's publish while the fence holds is refused as not started and tried again a second later without an attempt counted, then goes through once the fence opens", async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'a')
    await initDataDir(dir, { newNetwork: true })
    // A test.ping's effect publishes a test.pong once the file `gate` names exists, and throws before; each call is a line in `runs`.
    const plugins = join(tmp.path, 'plugins')
    mkdirSync(plugins)
    writeFileSync(
      join(plugins, 'echo.js'),
      `import { appendFileSync, existsSync } from 'node:fs'
export default ({ v, definePlugin }) =>
  definePlugin({
    name: 'echo',
    version: '1.0.0',
    handles: { 'test.ping': { version: 1, payload: v.object({ gate: v.string(), runs: v.string() }) } },
    apply() {},
    async effect(event, ctx) {
      appendFileSync(event.payload.runs, 'run\\n')
      if (!existsSync(event.payload.gate)) throw new Error('the gate is closed')
      await ctx.publish({ type: 'test.pong', payload: {} })
    }
  })
`
    )
    const gate = join(tmp.path, 'gate')
    const runs = join(tmp.path, 'runs')
    const runCount = (): number => (existsSync(runs) ? readFileSync(runs, 'utf8').split('\n').filter(Boolean).length : 0)
    let a: CairnNode | undefined = await inProcessNode(dir, { plugins })
    try {
      const { event_id } = await a.publish({ type: 'test.ping', payload: { gate, runs } })
      const node = a
      await waitFor('the effect to fail once', () => (node.store.pluginState.effectsOf(event_id)[0]?.attempts ?? 0) >= 1, 30_000)
      await a.stop()
      const [{ attempts }] = query<{ attempts: number }>(dir, 'SELECT attempts FROM plugin_effects WHERE event_id = ?', [event_id])
      const before = runCount()
      a = undefined
      writeFileSync(gate, '')

      // Restarted with a bootstrap peer nobody listens on: the fence holds publishes for its whole bound.
      const nobody = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
      const lines: string[] = []
      const log: Log = { debug: (m) => lines.push(m), info: (m) => lines.push(m), warn: (m) => lines.push(m), error: (m) => lines.push(m), child: () => log }
      const restarted = await inProcessNode(dir, { plugins, bootstrap: [`/ip4/127.0.0.1/tcp/1/p2p/${nobody}`], 'publish-fence': '3s' }, log)
      a = restarted
      await waitFor('a test.pong published', () => restarted.store.events.countAfter(0) === 2, 30_000)
      // Refused at least once while the fence held (a run that waited on the fence would have been the only one), and no refusal counted.
      expect(runCount()).toBeGreaterThanOrEqual(before + 2)
      expect(restarted.store.pluginState.effectsOf(event_id)).toEqual([{ plugin: 'echo', attempts: attempts + 1, done: true }])
      expect(lines.some((l) => l.includes('effect waits for the node to start'))).toBe(true)
    } finally {
      await a?.stop()
    }
  }, 120_000)

  test('a push from a peer that is not a member does not open the fence: anyone with the swarm key can push', async () => {
    using tmp = tempDir()
    const dirA = join(tmp.path, 'a')
    const dirX = join(tmp.path, 'x')
    const { peerId: owner } = await initDataDir(dirA, { newNetwork: true })
    // X holds the swarm key, but is no member.
    await initDataDir(dirX, { swarmKeyFile: join(dirA, 'swarm.key'), owners: [owner] })
    const x = await inProcessNode(dirX)
    // A's members list names A alone.
    const members = join(tmp.path, 'members.json')
    writeFileSync(members, JSON.stringify([owner]))
    let a: CairnNode | undefined
    try {
      a = await inProcessNode(dirA, { bootstrap: [x.ipfs.libp2p.getMultiaddrs()[0].toString()], 'publish-fence': '3s', members })
      const started = performance.now()
      expect((await a.publish({ type: 'test.e', payload: { n: 1 } })).seq).toBe(1)
      // Held for the whole fence: X's push (it greets A on connecting) did not open it.
      expect(performance.now() - started).toBeGreaterThan(2500)
    } finally {
      await a?.stop()
      await x.stop()
    }
  }, 60_000)

  test('a stop before any peer pushed refuses the publishes the fence holds (503 not_started), rather than committing seqs the node cannot tell are free', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'a')
    await initDataDir(dir, { newNetwork: true })
    const nobody = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    const a = await inProcessNode(dir, { bootstrap: [`/ip4/127.0.0.1/tcp/1/p2p/${nobody}`], 'publish-fence': '20s' })
    const held = a.publish({ type: 'test.e', payload: { n: 1 } }).then(
      (r) => ({ published: r.seq }),
      (err: Error) => ({ refused: err.name })
    )
    // The dial of port 1 is refused at once; a stop while it is under way makes the socket raise an AbortError
    // nothing listens for (@libp2p/tcp 11), so the stop comes after it.
    await waitFor('the dial of the bootstrap peer to fail', () => a.ipfs.libp2p.getDialQueue().length === 0, 10_000)
    await a.stop()
    expect(await held).toEqual({ refused: 'NotStartedError' })
    expect(eventCount(dir)).toBe(0)
  }, 60_000)
})
