import { describe, expect, test } from 'bun:test'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CairnNode } from '../../src/node/node.ts'
import { RUN_SETTINGS, toNodeConfig } from '../../src/config/catalog.ts'
import { resolveSettings } from '../../src/config/resolve.ts'
import { initDataDir } from '../../src/datadir/init.ts'
import { loadIdentity } from '../../src/datadir/load.ts'
import { silentLog } from '../../src/log/logger.ts'
import { ClockWatch } from '../../src/model/clockSkew.ts'
import { BUILTIN_PLUGINS } from '../../plugins/mod.ts'
import { addr } from '../helpers/forge.ts'
import { tempDir, waitFor } from '../helpers/process.ts'

const HOUR_MS = 3_600_000

/** Starts a node in this process whose wall clock is `offsetMs` off. */
async function node(dir: string, flags: Record<string, unknown>, offsetMs = 0): Promise<CairnNode> {
  const config = toNodeConfig(
    resolveSettings(RUN_SETTINGS, { data: dir, listen: ['/ip4/127.0.0.1/tcp/0'], http: '127.0.0.1:0', 'announce-interval': '1s', 'allow-unknown-types': true, ...flags }, {}, {})
  )
  const n = new CairnNode(config, { log: silentLog, plugins: BUILTIN_PLUGINS, now: () => Date.now() + offsetMs })
  await n.start()
  return n
}

/** Data directories of one network, each listing all of them in a static members file (a members list). */
async function network(parent: string, names: string[]): Promise<{ dirs: Record<string, string>; members: string }> {
  const dirs: Record<string, string> = {}
  for (const [i, name] of names.entries()) {
    dirs[name] = join(parent, name)
    await initDataDir(dirs[name], i === 0 ? { newNetwork: true } : { swarmKeyFile: join(dirs[names[0]], 'swarm.key') })
  }
  const ids = await Promise.all(names.map(async (n) => (await loadIdentity(dirs[n])).peerId.toString()))
  const members = join(parent, 'members.json')
  writeFileSync(members, JSON.stringify(ids))
  return { dirs, members }
}

/** Publishes three events on each node, each head taken (or, `held`, held for its clock) by `watcher` before the next (two move forward while it watches). */
async function threeHeadsEach(nodes: CairnNode[], watcher: CairnNode, held = false): Promise<void> {
  // A held head is not stored: its refusal names it (`Cannot accept head SEQ of …`), the highest kept per producer.
  const heldSeq = new Map<string, number>()
  const stop = watcher.events.listen('peer:rejected', (r) => {
    const seq = r.reason === 'clock_skew' && r.producer != null ? /head (\d+) of/.exec(r.detail)?.[1] : undefined
    if (seq != null) heldSeq.set(r.producer!, Math.max(heldSeq.get(r.producer!) ?? 0, Number(seq)))
  })
  try {
    for (const n of nodes) {
      const id = n.peerId.toString()
      for (let i = 1; i <= 3; i++) {
        const { seq } = await n.publish({ type: 'test.tick', payload: { i } })
        if (held) await waitFor(`head ${seq} of a node held by the watcher`, () => (heldSeq.get(id) ?? 0) >= seq, 20_000)
        else await waitFor(`head ${seq} of a node on the watcher`, () => (watcher.store.producers.get(id)?.head_seq ?? 0) >= seq, 20_000)
      }
    }
  } finally {
    stop()
  }
}

describe('the publish refusal (clock_skew) against colluding members', () => {
  test('two members stamping an hour behind make every honest node of a members list refuse to publish, the idle and the active alike', async () => {
    using tmp = tempDir()
    const { dirs, members } = await network(tmp.path, ['a', 'c', 'x', 'y'])
    const a = await node(dirs.a, { members })
    const c = await node(dirs.c, { members, bootstrap: [addr(a)] })
    // The colluders: members with valid keys whose heads say an hour ago (a clock set back is the simplest forge).
    const x = await node(dirs.x, { bootstrap: [addr(a)], 'publish-fence': '0s' }, -HOUR_MS)
    const y = await node(dirs.y, { bootstrap: [addr(a)], 'publish-fence': '0s' }, -HOUR_MS)
    try {
      // c is honest and active too: it publishes while a watches, its heads within the skew.
      await threeHeadsEach([c], a)
      await threeHeadsEach([x, y], a)
      await waitFor('x and y on c', () => (c.store.producers.get(y.peerId.toString())?.head_seq ?? 0) >= 3, 20_000)
      // Two of the three producers a watched say a's clock is an hour ahead: a refuses, though its clock is right.
      expect((await a.statusJson()).clock.publish_refused).toContain('ahead of')
      await expect(a.publish({ type: 'test.after', payload: {} })).rejects.toMatchObject({ name: 'ClockSkewError' })
      // So does c: it watched x, y and a's heads, and a publishes no more.
      expect((await c.statusJson()).clock.publish_refused).toContain('ahead of')
      await expect(c.publish({ type: 'test.after', payload: {} })).rejects.toMatchObject({ name: 'ClockSkewError' })
      // The colluders publish on.
      await x.publish({ type: 'test.tick', payload: { i: 4 } })
    } finally {
      await y.stop()
      await x.stop()
      await c.stop()
      await a.stop()
    }
  }, 120_000)

  test("a node whose clock is an hour behind the network's refuses to publish once two producers agree (clock.publish_refused says behind)", async () => {
    using tmp = tempDir()
    const { dirs, members } = await network(tmp.path, ['a', 'c', 'b'])
    const a = await node(dirs.a, { members })
    const c = await node(dirs.c, { members, bootstrap: [addr(a)] })
    const behind = await node(dirs.b, { members, bootstrap: [addr(a)], 'publish-fence': '0s' }, -HOUR_MS)
    try {
      await threeHeadsEach([a, c], behind, true)
      // Every head of a and c is stamped an hour ahead of b's clock: held, and the proof that b's clock is behind.
      await waitFor('b to hold heads of a and c', async () => (await behind.statusJson()).clock.producers_ahead.length === 2, 20_000)
      const refused = await waitFor('the node behind to know its clock is off', async () => (await behind.statusJson()).clock.publish_refused ?? undefined, 20_000)
      expect(refused).toContain('behind')
      await expect(behind.publish({ type: 'test.late', payload: {} })).rejects.toMatchObject({ name: 'ClockSkewError' })
    } finally {
      await behind.stop()
      await c.stop()
      await a.stop()
    }
  }, 120_000)
})

describe('how long colluding members keep a node from publishing', () => {
  test('as long as they publish, once they outnumber the other producers seen moving in the last 10 minutes; 10 minutes after their last head it ends', () => {
    let now = 1_800_000_000_000
    const watch = new ClockWatch(() => now, 60_000)
    // c, honest, moved twice while this node watched; then it is refused too and publishes nothing.
    watch.sample('c', 1, now)
    watch.sample('c', 2, now)
    let seq = 0
    const collude = (): void => {
      seq++
      for (const p of ['x', 'y']) watch.sample(p, seq, now - HOUR_MS)
    }
    collude()
    collude()
    collude()
    // A head a minute from each of x and y, for a day.
    for (let minute = 0; minute < 24 * 60; minute++) {
      expect(watch.stampRefusal()).toContain('ahead of')
      now += 60_000
      collude()
    }
    now += 10 * 60_000 + 1
    expect(watch.stampRefusal()).toBeUndefined()
  })
})

describe('one member replaying heads of honest producers', () => {
  test("makes a node that was away refuse to publish, though every clock is right: the heads it passes on are the producers' own, only old", async () => {
    using tmp = tempDir()
    const { dirs, members } = await network(tmp.path, ['v', 'p', 'q'])
    // p and q publish while v is away; a member (not started here: it only keeps what it relays) records each signed head.
    const p = await node(dirs.p, { members, 'max-clock-skew': '1s' })
    const q = await node(dirs.q, { members, 'max-clock-skew': '1s', bootstrap: [addr(p)] })
    const recorded: Uint8Array[] = []
    try {
      for (const n of [p, q]) {
        for (let i = 1; i <= 3; i++) {
          await n.publish({ type: 'test.tick', payload: { i } })
          recorded.push(n.store.producers.get(n.peerId.toString())!.head_message!)
        }
      }
    } finally {
      await q.stop()
      await p.stop()
    }
    // Two seconds after the last (twice the skew), v starts, and the member hands it those heads, in order, before
    // anyone else hands it the latest (here nobody else does).
    const last = Date.now()
    await waitFor('twice the skew to pass', () => Date.now() >= last + 2000)
    const v = await node(dirs.v, { members, 'max-clock-skew': '1s' })
    try {
      for (const head of recorded) await v.offerHead(head)
      expect((await v.statusJson()).clock.publish_refused).toContain('ahead of')
      await expect(v.publish({ type: 'test.after', payload: {} })).rejects.toMatchObject({ name: 'ClockSkewError' })
    } finally {
      await v.stop()
    }
  }, 60_000)
})

describe('one member stamping half the skew ahead, which every node follows', () => {
  test('does not make a node behind by less than the skew refuse to publish, though it drags every stamp it sees past the skew', async () => {
    using tmp = tempDir()
    const { dirs, members } = await network(tmp.path, ['a', 'c', 'b', 'x'])
    const a = await node(dirs.a, { members })
    const c = await node(dirs.c, { members, bootstrap: [addr(a)] })
    // b is 45 s behind: within the skew (60 s), so what the honest nodes stamp by their clocks reaches it at once.
    const b = await node(dirs.b, { members, bootstrap: [addr(a)], 'publish-fence': '0s' }, -45_000)
    // x stamps 29 s ahead: within half the skew, so a and c follow it, and stamp 29 s ahead too.
    const x = await node(dirs.x, { members, bootstrap: [addr(a)], 'publish-fence': '0s' }, 29_000)
    try {
      await x.publish({ type: 'test.tick', payload: {} })
      await waitFor("x's head on a and c", () => [a, c].every((n) => (n.store.producers.get(x.peerId.toString())?.head_seq ?? 0) >= 1), 20_000)
      // a, c and x then stamp 74 s ahead of b's clock: held there, each head a head stamped beyond the skew.
      await threeHeadsEach([a, c, x], b, true)
      await waitFor('b to hold heads of a, c and x', async () => (await b.statusJson()).clock.producers_ahead.length === 3, 20_000)
      expect((await b.statusJson()).clock.publish_refused).toBeNull()
      await b.publish({ type: 'test.after', payload: {} })
    } finally {
      await x.stop()
      await b.stop()
      await c.stop()
      await a.stop()
    }
  }, 120_000)
})
