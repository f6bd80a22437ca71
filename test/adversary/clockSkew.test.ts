import { describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { uuidv7 } from 'uuidv7'
import { CairnNode } from '../../src/node/node.ts'
import { RUN_SETTINGS, toNodeConfig } from '../../src/config/catalog.ts'
import { resolveSettings } from '../../src/config/resolve.ts'
import { initDataDir } from '../../src/datadir/init.ts'
import { silentLog } from '../../src/log/logger.ts'
import { fileName } from '../../src/model/layout.ts'
import { HybridClock } from '../../src/model/hlc.ts'
import { BUILTIN_PLUGINS } from '../../plugins/mod.ts'
import { publishForgedTree } from '../helpers/forge.ts'
import { tempDir, waitFor } from '../helpers/process.ts'

const YEAR_MS = 365 * 86_400_000

/** Starts a node in this process whose wall clock is `offsetMs` off. */
async function node(dir: string, flags: Record<string, unknown>, offsetMs = 0): Promise<CairnNode> {
  const config = toNodeConfig(
    resolveSettings(RUN_SETTINGS, { data: dir, listen: ['/ip4/127.0.0.1/tcp/0'], http: '127.0.0.1:0', 'announce-interval': '1h', 'allow-unknown-types': true, ...flags }, {}, {})
  )
  const n = new CairnNode(config, { log: silentLog, plugins: BUILTIN_PLUGINS, now: () => Date.now() + offsetMs })
  await n.start()
  return n
}

async function dirs(parent: string): Promise<{ a: string; b: string; c: string }> {
  const a = join(parent, 'a')
  const b = join(parent, 'b')
  const c = join(parent, 'c')
  await initDataDir(a, { newNetwork: true })
  await initDataDir(b, { swarmKeyFile: join(a, 'swarm.key') })
  await initDataDir(c, { swarmKeyFile: join(a, 'swarm.key') })
  return { a, b, c }
}

describe('the clock rule (--max-clock-skew)', () => {
  test("a member's grant stamped a year ahead does not survive a later revocation on the victim", async () => {
    using tmp = tempDir()
    const { a, b } = await dirs(tmp.path)
    const victim = await node(a, {})
    const member = await node(b, { bootstrap: [victim.ipfs.libp2p.getMultiaddrs()[0].toString()] })
    try {
      const me = member.peerId.toString()
      let held = false
      victim.events.listen('peer:rejected', ({ reason }) => {
        if (reason === 'clock_skew') held = true
      })
      const grant = {
        event_id: uuidv7(),
        type: 'workspace.invited',
        version: 1,
        producer: me,
        seq: 1,
        hlc: `${Date.now() + YEAR_MS}-0000`,
        occurred_at: new Date().toISOString(),
        payload: { workspace_id: 'w1', invitee: 'mallory@example.com', role: 'member', invited_by: 'mallory@example.com' }
      }
      await publishForgedTree(member, 1, [{ name: fileName(1, grant.event_id), content: grant }])
      const ingested = (): boolean => victim.store.db.get('SELECT 1 AS x FROM events WHERE event_id = ?', [grant.event_id]) != null
      await waitFor('the victim to take or hold the grant', () => held || ingested())

      const revoked = await victim.publish({ type: 'permission.revoked', payload: { workspace_id: 'w1', subject: 'mallory@example.com', permission: 'member' } })
      const access = (): { granted: number; event_id: string } | undefined =>
        victim.store.db.get<{ granted: number; event_id: string }>("SELECT granted, event_id FROM workspace_access WHERE subject = 'mallory@example.com' AND permission = 'member'")
      // Before the rule the grant's year-ahead key outranked the revocation and this never came.
      await waitFor('the revocation to decide access', () => access()?.event_id === revoked.event_id, 20_000)
      expect(access()?.granted).toBe(0)
      expect(ingested()).toBe(false)
      const status = await victim.statusJson()
      expect(status.clock.producers_ahead.map((p) => p.producer)).toEqual([me])
      expect(status.clock.producers_ahead[0].ahead_ms).toBeGreaterThan(YEAR_MS - 86_400_000)
    } finally {
      await member.stop()
      await victim.stop()
    }
  })

  test('a node whose clock is a year ahead is seen in status and refused to publish', async () => {
    using tmp = tempDir()
    const { a, b, c } = await dirs(tmp.path)
    const honest = await node(a, { 'announce-interval': '1s' })
    const other = await node(c, { bootstrap: [honest.ipfs.libp2p.getMultiaddrs()[0].toString()], 'announce-interval': '1s' })
    const ahead = await node(b, { bootstrap: [honest.ipfs.libp2p.getMultiaddrs()[0].toString()], 'announce-interval': '1s' }, YEAR_MS)
    try {
      // Three heads of each honest node, the last two moving forward while the ahead node watches: two
      // producers agree, each twice, that its clock is ahead (one alone could be a liar, one head late).
      for (const n of [honest, other]) {
        for (const [i, type] of ['test.one', 'test.two', 'test.three'].entries()) {
          await n.publish({ type, payload: {} })
          await waitFor(`head ${i + 1}`, () => (ahead.store.producers.get(n.peerId.toString())?.head_seq ?? 0) >= i + 1)
        }
      }
      const refused = await waitFor('the ahead node to know its clock is off', async () => (await ahead.statusJson()).clock.publish_refused ?? undefined)
      expect(refused).toContain('ahead of')
      expect((await ahead.statusJson()).clock.network_offset_ms).toBeLessThan(-(YEAR_MS - 86_400_000))
      expect(ahead.publish({ type: 'test.late', payload: {} })).rejects.toMatchObject({ name: 'ClockSkewError' })
      const token = readFileSync(join(b, 'api.token'), 'utf8').trim()
      const res = await fetch(`http://127.0.0.1:${ahead.http!.port}/v1/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'test.late', payload: {} })
      })
      expect(res.status).toBe(503)
      // The honest node holds the ahead node's head and names it, with how far ahead it is.
      const seen = await waitFor('the honest node to see the clock ahead', async () => {
        const s = await honest.statusJson()
        return s.clock.producers_ahead.find((p) => p.producer === ahead.peerId.toString())
      })
      expect(seen.ahead_ms).toBeGreaterThan(YEAR_MS - 86_400_000)
      const metrics = await (await fetch(`http://127.0.0.1:${honest.http!.port}/metrics`)).text()
      expect(metrics).toContain(`cairn_producer_clock_ahead_seconds{producer="${ahead.peerId.toString()}"}`)
    } finally {
      await ahead.stop()
      await other.stop()
      await honest.stop()
    }
  })

  test('a node whose clock was set back while it was stopped stamps its next events after its last ones: its peers take them', async () => {
    using tmp = tempDir()
    const { a, b } = await dirs(tmp.path)
    const peer = await node(b, {})
    const address = peer.ipfs.libp2p.getMultiaddrs()[0].toString()
    // A's clock is right, then set back two minutes (more than --max-clock-skew) while it is stopped: an NTP step, a
    // clock reset at boot.
    let producer = await node(a, { bootstrap: [address] })
    try {
      const self = producer.peerId.toString()
      const seqOnB = (): number => peer.store.producers.get(self)?.processed_seq ?? 0
      await producer.publish({ type: 'test.e', payload: { n: 1 } })
      await waitFor('B to take event 1', () => seqOnB() >= 1, 30_000)
      const first = peer.store.producers.get(self)?.head_hlc ?? ''
      await producer.stop()
      producer = await node(a, { bootstrap: [address] }, -120_000)
      await producer.publish({ type: 'test.e', payload: { n: 2 } })
      // Stamped after event 1, though the wall clock is 2 min behind it: B takes it at once, not once A publishes again.
      await waitFor('B to take event 2', () => seqOnB() >= 2, 20_000)
      expect((peer.store.producers.get(self)?.head_hlc ?? '') > first).toBe(true)
    } finally {
      await producer.stop()
      await peer.stop()
    }
  }, 120_000)
})

describe('a clock running ahead within the skew', () => {
  test('drags the others by at most half of it, so a node slightly behind still takes what they stamp', () => {
    const T = 1_800_000_000_000
    const a = new HybridClock(() => T)
    const b = new HybridClock(() => T - 50)
    // A member 59.99 s ahead: within --max-clock-skew, so taken, but too far ahead to be followed.
    const ahead = `${T + 59_990}-0000`
    expect(a.hold('m', ahead)).toBeUndefined()
    a.observe(ahead)
    expect(b.hold('a', a.tick())).toBeUndefined()
    // Half the skew ahead is followed, and what a stamps next is still within b's window.
    a.observe(`${T + 30_000}-0000`)
    const next = a.tick()
    expect(next > `${T + 30_000}-0000`).toBe(true)
    expect(b.hold('a', next)).toBeUndefined()
  })
})

describe("the network's time", () => {
  test('one producer alone cannot make a node refuse to publish; two agreeing can', () => {
    const T = 1_800_000_000_000
    const watch = new HybridClock(() => T).watch
    const past = T - YEAR_MS
    for (let seq = 1; seq <= 3; seq++) watch.sample('liar', seq, past)
    expect(watch.stampRefusal()).toBeUndefined()
    for (let seq = 1; seq <= 3; seq++) watch.sample('second', seq, past)
    expect(watch.stampRefusal()).toContain('ahead of')
  })

  test("heads stamped during a partition and taken after it do not make a node refuse to publish: each producer's next head must agree", () => {
    let now = 1_800_000_000_000
    const watch = new HybridClock(() => now).watch
    // Two producers watched moving forward, clocks right; then a partition of 10 minutes, in whose first minute
    // each published once; their heads arrive when it heals, stamped 9 minutes before.
    for (const p of ['p', 'q']) {
      watch.sample(p, 1, now)
      watch.sample(p, 2, now)
    }
    now += 10 * 60_000
    watch.sample('p', 3, now - 9 * 60_000)
    watch.sample('q', 3, now - 9 * 60_000)
    expect(watch.stampRefusal()).toBeUndefined()
    // A clock really ahead: their next heads say it again.
    watch.sample('p', 4, now - 9 * 60_000)
    watch.sample('q', 4, now - 9 * 60_000)
    expect(watch.stampRefusal()).toContain('9.0 min ahead of')
  })
})
