import { Database } from 'bun:sqlite'
import { describe, expect, test } from 'bun:test'
import { cpSync, readFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { initDataDir } from '../src/datadir/init.ts'
import type { CairnNode } from '../src/node/node.ts'
import { eventCount, query } from './helpers/db.ts'
import { inProcessNode } from './helpers/forge.ts'
import { tempDir, waitFor } from './helpers/process.ts'

/** Empties a stopped node's `signed_roots`, as if its roots were older than the last SIGNED_ROOTS it signed. */
function forgetSignedRoots(dir: string): void {
  const db = new Database(join(dir, 'cairn.db'))
  try {
    db.run('DELETE FROM signed_roots')
  } finally {
    db.close()
  }
}

/** What a copy of a data directory leaves out: the locks and the run file of the node that ran on it. */
const NOT_COPIED = new Set(['instance.lock', 'run.lock', 'run.lock.start', 'node.json'])

/** @returns the last seq of a node's own outbox, read from its cairn.db */
const lastSeq = (dir: string): number => query<{ s: number | null }>(dir, 'SELECT max(seq) AS s FROM outbox')[0].s ?? 0

/** @returns how many of a node's own heads with a root it did not hold were checked, by result */
async function ownChecks(node: CairnNode): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const v of (await node.metrics.ownHeadsChecked.get()).values) out[String(v.labels.result)] = v.value
  return out
}

/** @returns the status code and error code of a publish over HTTP */
async function publishOverHttp(node: CairnNode, dir: string, payload: unknown): Promise<{ status: number; code?: string }> {
  const token = readFileSync(join(dir, 'api.token'), 'utf8').trim()
  const r = await fetch(`http://127.0.0.1:${node.http!.port}/v1/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'test.e', payload })
  })
  return { status: r.status, code: ((await r.json()) as { error?: { code: string } }).error?.code }
}

describe('one identity on two nodes', () => {
  test("copies of one data directory publish different events at the same seq: the one that hears the other's head refuses to publish (409 producer_diverged) and says why", async () => {
    using tmp = tempDir()
    const dirA = join(tmp.path, 'a')
    const dirCopy = join(tmp.path, 'copy')
    const dirC = join(tmp.path, 'c')
    const dirD = join(tmp.path, 'd')
    await initDataDir(dirA, { newNetwork: true })
    await initDataDir(dirC, { swarmKeyFile: join(dirA, 'swarm.key') })
    await initDataDir(dirD, { swarmKeyFile: join(dirA, 'swarm.key') })
    // c and d are the network; a reaches it through c, the copy through d (one identity, two places).
    const c = await inProcessNode(dirC, { 'announce-interval': '1s' })
    const address = (n: CairnNode): string => n.ipfs.libp2p.getMultiaddrs()[0].toString()
    const d = await inProcessNode(dirD, { bootstrap: [address(c)], 'announce-interval': '1s' })
    let a: CairnNode | undefined
    let copy: CairnNode | undefined
    try {
      a = await inProcessNode(dirA, { bootstrap: [address(c)], 'announce-interval': '1s' })
      await a.publish({ type: 'test.e', payload: { n: 1 } })
      await waitFor('the first event on c and d', () => eventCount(dirC) === 1 && eventCount(dirD) === 1, 30_000)
      await a.stop()
      // The copy leaves out the peers a met (its datastore): it meets the network through d alone.
      cpSync(dirA, dirCopy, { recursive: true, filter: (src) => !NOT_COPIED.has(basename(src)) && basename(src) !== 'datastore' })

      // No publish fence: held until c or d pushed, the later of the two would hear the other's seq 2 first and
      // take it as its own history (the case a fence is for), and the fork this test is about would not arise.
      a = await inProcessNode(dirA, { bootstrap: [address(c)], 'announce-interval': '1s', 'publish-fence': '0s' })
      copy = await inProcessNode(dirCopy, { bootstrap: [address(d)], 'announce-interval': '1s', 'publish-fence': '0s' })
      const [fromA, fromCopy] = await Promise.all([a.publish({ type: 'test.e', payload: { from: 'a' } }), copy.publish({ type: 'test.e', payload: { from: 'copy' } })])
      // Both answer 201 for seq 2, with different files: without the check, both would go on so.
      expect([fromA.seq, fromCopy.seq]).toEqual([2, 2])
      expect(fromA.cid).not.toBe(fromCopy.cid)

      const nodes = [
        { node: a, dir: dirA },
        { node: copy, dir: dirCopy }
      ]
      const forked = await waitFor(
        'one of them to see the fork',
        async () => {
          for (const n of nodes) if ((await n.node.statusJson()).reasons.some((r) => r.includes('its identity runs on another node too'))) return n
          return undefined
        },
        30_000
      )
      const status = await forked.node.statusJson()
      expect(status.verdict).toBe('degraded')
      expect(status.reasons.find((r) => r.includes('runs on another node'))).toMatch(/file at seq 2 is .*, not the .* this node published there.*; publishing is refused/)
      const seq = lastSeq(forked.dir)
      await expect(forked.node.publish({ type: 'test.e', payload: { after: 1 } })).rejects.toThrow(/its identity runs on another node too/)
      expect(await publishOverHttp(forked.node, forked.dir, { after: 2 })).toEqual({ status: 409, code: 'producer_diverged' })
      expect(lastSeq(forked.dir)).toBe(seq)
      expect((await ownChecks(forked.node)).forked).toBeGreaterThan(0)
    } finally {
      await copy?.stop()
      await a?.stop()
      await d.stop()
      await c.stop()
    }
  }, 120_000)

  test('a node that writes a snapshot, prunes and refreshes its head, and hears those re-signed heads back from a peer after it moved on, reports no fork', async () => {
    using tmp = tempDir()
    const dirA = join(tmp.path, 'a')
    const dirB = join(tmp.path, 'b')
    await initDataDir(dirA, { newNetwork: true })
    await initDataDir(dirB, { swarmKeyFile: join(dirA, 'swarm.key') })
    const b = await inProcessNode(dirB)
    let a: CairnNode | undefined
    try {
      a = await inProcessNode(dirA, { bootstrap: [b.ipfs.libp2p.getMultiaddrs()[0].toString()], retention: '1s', 'retention-max': '1h', 'announce-interval': '1s' })
      const node = a
      const self = a.peerId.toString()
      const bPeer = b.peerId.toString()
      const onB = (): { root: string | null; hlc: string | null; message: Uint8Array | null } | undefined => {
        const row = b.store.producers.get(self)
        return row == null ? undefined : { root: row.head_root, hlc: row.head_hlc, message: row.head_message }
      }
      const checks = async (of: CairnNode): Promise<number> => Object.values(await ownChecks(of)).reduce((s, n) => s + n, 0)
      /** @returns a's head as b holds it once b took one signed after `hlc` */
      const nextOnB = async (what: string, hlc: string | null | undefined): Promise<Uint8Array> =>
        await waitFor(
          `b to hold a's head after ${what}`,
          () => {
            const h = onB()
            return h?.message != null && h.hlc !== hlc ? h.message : undefined
          },
          30_000
        )
      const publish = async (n: number): Promise<void> => {
        const hlc = onB()?.hlc
        expect((await node.publish({ type: 'test.e', payload: { n } })).seq).toBe(n)
        await nextOnB(`event ${n}`, hlc)
      }
      for (let n = 1; n <= 3; n++) await publish(n)

      // A snapshot re-signs seq 3 with a new root.
      let hlc = onB()?.hlc
      expect((await a.writeSnapshots()).length).toBeGreaterThan(0)
      const snapshot = await nextOnB('the snapshot', hlc)
      await publish(4)

      // A prune re-signs seq 4 without the files past the retention (1 s) that b acknowledged.
      hlc = onB()?.hlc
      await waitFor(
        'a to prune',
        async () => {
          await node.housekeeping()
          return query<{ n: number }>(dirA, 'SELECT count(*) AS n FROM outbox WHERE pruned_at IS NOT NULL')[0].n > 0
        },
        30_000,
        250
      )
      const pruned = await nextOnB('the prune', hlc)
      await publish(5)

      // b publishes: a's acks move, and its re-announce re-signs seq 5 (the same root).
      hlc = onB()?.hlc
      await b.publish({ type: 'test.e', payload: { from: 'b' } })
      const refreshed = await nextOnB('the refresh', hlc)
      await publish(6)
      // a's housekeeping collects the blocks only those older roots reached: a check fetches them from b.
      await a.housekeeping()
      // A node does not check heads of the roots it signed lately (signed_roots): a restarted a that forgot
      // them (as it does past the last 65,536) does.
      await a.stop()
      forgetSignedRoots(dirA)
      a = await inProcessNode(dirA, { bootstrap: [b.ipfs.libp2p.getMultiaddrs()[0].toString()], retention: '1s', 'retention-max': '1h', 'announce-interval': '1s' })
      const restarted = a

      // A peer that lags hands a those heads back now, each with a root that is no longer a's.
      for (const [what, message] of [
        ['the snapshot', snapshot],
        ['the prune', pruned],
        ['the refresh', refreshed]
      ] as const) {
        const before = await checks(restarted)
        await restarted.offerHead(message, bPeer)
        await waitFor(`a to check its head of ${what}`, async () => (await checks(restarted)) > before, 30_000)
      }
      const checked = await ownChecks(a)
      // The snapshot's and the refresh's trees hold a's file at their seq; the prune's may have pruned it too (no verdict).
      expect(checked).toEqual({ same: expect.any(Number), ...(checked.no_verdict == null ? {} : { no_verdict: 1 }) })
      expect(checked.same + (checked.no_verdict ?? 0)).toBe(3)
      expect((await a.statusJson()).reasons.filter((r) => r.includes('own head'))).toEqual([])
      expect((await a.publish({ type: 'test.e', payload: { n: 7 } })).seq).toBe(7)
    } finally {
      await a?.stop()
      await b.stop()
    }
  }, 120_000)
})

// In an hour bucket of a few thousand files, the file at the head's seq must still be found, or no copy of a
// busy node's identity is ever seen.
test("a node's own older head, in an hour bucket of 3,000 files, is found to hold its own file (looked up by its name's hash)", async () => {
  using tmp = tempDir()
  const dir = join(tmp.path, 'a')
  await initDataDir(dir, { newNetwork: true })
  let a = await inProcessNode(dir)
  try {
    for (let i = 0; i < 15; i++) await Promise.all(Array.from({ length: 200 }, (_, j) => a.publish({ type: 'test.e', payload: { n: i * 200 + j } })))
    const old = a.store.producers.get(a.peerId.toString())?.head_message
    expect(old).toBeTruthy()
    await a.publish({ type: 'test.e', payload: { n: 'last' } })
    // A node does not check heads of the roots it signed lately (signed_roots): one that forgot them does.
    await a.stop()
    forgetSignedRoots(dir)
    a = await inProcessNode(dir)
    await a.offerHead(old!)
    const results = await waitFor(
      'the check of the older head',
      async () => {
        const values = (await a.metrics.ownHeadsChecked.get()).values
        return values.length > 0 ? Object.fromEntries(values.map((v) => [String(v.labels.result), v.value])) : undefined
      },
      30_000
    )
    expect(results).toEqual({ same: 1 })
  } finally {
    await a.stop()
  }
}, 120_000)
