import { describe, expect, test } from 'bun:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { Store } from '../../src/store/store.ts'
import { migratePlugins, tablesOf } from '../../src/plugins/migrate.ts'
import { Snapshots, trustedForSnapshots } from '../../src/plugins/snapshots.ts'
import { definePlugin, v } from '../../src/plugins/mod.ts'
import { silentLog } from '../../src/log/logger.ts'
import { Metrics } from '../../src/metrics/metrics.ts'
import { CairnEventBus } from '../../src/node/events.ts'
import { signSnapshot, SNAPSHOTS_DIR, type Snapshot } from '../../src/model/snapshot.ts'
import { directoryBlock, fileBlock } from '../../src/unixfs/tree.ts'
import { storedStatus } from '../../src/node/status.ts'

const counter = definePlugin({
  name: 'counter',
  handles: { 'test.counted': { version: 1, payload: v.object({ w: v.string() }) } },
  migrations: ['CREATE TABLE counted (w TEXT PRIMARY KEY, n INTEGER NOT NULL)'],
  apply(event, { db }) {
    db.run('INSERT INTO counted (w, n) VALUES (?, 1) ON CONFLICT (w) DO UPDATE SET n = n + 1', [event.payload.w])
  }
})

const SELF = '12D3KooWA1111111111111111111111111111111111111111111'

/** A node that joined after `origin`'s seqs 1..5 were pruned, and producers whose trees publish snapshots. */
async function setup(): Promise<{
  store: Store
  blocks: Map<string, Uint8Array>
  origin: string
  publish: (key: PrivateKey, rows: Array<[string, number]>, vector?: Record<string, number>, tables?: Snapshot['tables']) => Promise<string>
}> {
  const db = await openDatabase(':memory:')
  migrate(db)
  const store = new Store(db)
  migratePlugins(store.pluginState, [{ plugin: counter, source: 'test' }])
  const origin = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const blocks = new Map<string, Uint8Array>()
  store.producers.putHead({ producer: origin, seq: 8, root: 'bafkqaaa', hlc: '1800000000000-0000', acks: {}, signed: new Uint8Array(), receivedAt: 0 })
  store.gaps.add(origin, 1, 5, 0, 'horizon')
  // Each producer's tree holds only its snapshots directory: enough for the bootstrap, which never walks days.
  const publish = async (key: PrivateKey, rows: Array<[string, number]>, vector?: Record<string, number>, tables?: Snapshot['tables']): Promise<string> => {
    const producer = peerIdFromPrivateKey(key).toString()
    const snapshot: Snapshot = {
      format: 'cairn.snapshot/1',
      plugin: 'counter',
      producer,
      created_at: new Date(0).toISOString(),
      vector: vector ?? { [origin]: 5 },
      tables: tables ?? { counted: { columns: ['w', 'n'], rows } }
    }
    const file = await fileBlock(await signSnapshot(snapshot, key))
    const dir = await directoryBlock([{ name: 'counter.json', cid: file.cid, size: file.bytes.length }])
    const root = await directoryBlock([{ name: SNAPSHOTS_DIR, cid: dir.cid, size: dir.size }])
    for (const b of [file, dir, root]) blocks.set(b.cid.toString(), b.bytes)
    store.producers.putHead({ producer, seq: 0, root: root.cid.toString(), hlc: '1800000000000-0000', acks: {}, signed: new Uint8Array(), receivedAt: 0 })
    return producer
  }
  return { store, blocks, origin, publish }
}

function service(store: Store, blocks: Map<string, Uint8Array>, trusted: string[]): Snapshots {
  return new Snapshots(
    { self: SELF, store, log: silentLog, metrics: new Metrics(), events: new CairnEventBus() },
    {
      plugins: [counter],
      privateKey: undefined as unknown as PrivateKey,
      put: async () => {
        throw new Error('not written here')
      },
      getBlock: async (cid: CID) => {
        const b = blocks.get(cid.toString())
        if (b == null) throw new Error(`no block ${cid}`)
        return b
      },
      trusted: () => trusted,
      fetchTimeout: 1000,
      loaded: () => {}
    }
  )
}

describe('bootstrapping from snapshots', () => {
  test('two trusted producers whose snapshots of the same vector disagree: the node says so and loads neither', async () => {
    const { store, blocks, publish } = await setup()
    const b = await publish(await generateKeyPair('Ed25519'), [['w1', 5]])
    const c = await publish(await generateKeyPair('Ed25519'), [['w1', 6]])
    const s = service(store, blocks, [b, c])
    await s.bootstrap()
    expect(store.snapshots.allLoaded()).toEqual([])
    expect(store.db.all('SELECT * FROM counted')).toEqual([])
    const state = s.states()[0]
    expect(state.disagreement).toContain(`${b} and ${c} disagree at`)
    expect(state.state).toContain('waiting for a snapshot: snapshots disagree')
  })

  test('two trusted producers that agree: the snapshot is loaded, and a producer outside the trusted list is never asked', async () => {
    const { store, blocks, origin, publish } = await setup()
    const b = await publish(await generateKeyPair('Ed25519'), [['w1', 5]])
    const c = await publish(await generateKeyPair('Ed25519'), [['w1', 5]])
    const untrusted = await publish(await generateKeyPair('Ed25519'), [['w1', 99]])
    const s = service(store, blocks, [b, c])
    await s.bootstrap()
    expect(store.db.all('SELECT w, n FROM counted')).toEqual([{ w: 'w1', n: 5 }])
    expect(store.snapshots.loaded('counter')?.vector).toEqual({ [origin]: 5 })
    expect([b, c]).toContain(store.snapshots.loaded('counter')!.producer)
    expect(store.snapshots.loaded('counter')!.producer).not.toBe(untrusted)
    expect(s.states()[0]).toEqual({ plugin: 'counter', state: `state from snapshot of ${store.snapshots.loaded('counter')!.producer} at {"${origin}":5}` })
  })

  test("a snapshot lacking one of the plugin's tables (another version's) is passed over for a complete one, though it covers more", async () => {
    const { store, blocks, origin, publish } = await setup()
    const complete = await publish(await generateKeyPair('Ed25519'), [['w1', 5]])
    const lacking = await publish(await generateKeyPair('Ed25519'), [], { [origin]: 8 }, {})
    const s = service(store, blocks, [lacking, complete])
    await s.bootstrap()
    expect(store.snapshots.loaded('counter')?.producer).toBe(complete)
    expect(store.db.all('SELECT w, n FROM counted')).toEqual([{ w: 'w1', n: 5 }])
  })

  test('a load that fails half way leaves the plugin as it was', async () => {
    const { store, blocks, publish } = await setup()
    store.db.run("INSERT INTO counted (w, n) VALUES ('before', 1)")
    // a snapshot naming a column the table does not have: the insert fails inside the load's transaction
    const key = await generateKeyPair('Ed25519')
    const b = await publish(key, [['w1', 5]])
    const root = store.producers.get(b)!.head_root!
    const origin = store.producers.all().find((p) => p.producer !== b)!.producer
    const snapshot: Snapshot = {
      format: 'cairn.snapshot/1',
      plugin: 'counter',
      producer: b,
      created_at: new Date(0).toISOString(),
      vector: { [origin]: 5 },
      tables: { counted: { columns: ['w', 'nope'], rows: [['w1', 5]] } }
    }
    const file = await fileBlock(await signSnapshot(snapshot, key))
    const dir = await directoryBlock([{ name: 'counter.json', cid: file.cid, size: file.bytes.length }])
    const newRoot = await directoryBlock([{ name: SNAPSHOTS_DIR, cid: dir.cid, size: dir.size }])
    for (const x of [file, dir, newRoot]) blocks.set(x.cid.toString(), x.bytes)
    expect(newRoot.cid.toString()).not.toBe(root)
    store.producers.putHead({ producer: b, seq: 1, root: newRoot.cid.toString(), hlc: '1800000000001-0000', acks: {}, signed: new Uint8Array(), receivedAt: 0 })
    const s = service(store, blocks, [b])
    await s.bootstrap()
    expect(store.db.all('SELECT w, n FROM counted')).toEqual([{ w: 'before', n: 1 }])
    expect(store.snapshots.allLoaded()).toEqual([])
    expect(s.states()[0].state).toContain('waiting for a snapshot')
  })

  test('a plugin that opted out is never written nor loaded; its state starts at the horizon, as status says', async () => {
    const { store, blocks, publish } = await setup()
    const b = await publish(await generateKeyPair('Ed25519'), [['w1', 5]])
    const optedOut = { ...counter, snapshot: false as const }
    const s = new Snapshots(
      { self: SELF, store, log: silentLog, metrics: new Metrics(), events: new CairnEventBus() },
      {
        plugins: [optedOut],
        privateKey: await generateKeyPair('Ed25519'),
        put: async () => {
          throw new Error('not written')
        },
        getBlock: async (cid: CID) => blocks.get(cid.toString())!,
        trusted: () => [b],
        fetchTimeout: 1000,
        loaded: () => {}
      }
    )
    await s.bootstrap()
    expect(store.snapshots.allLoaded()).toEqual([])
    expect(s.states()[0].state).toEndWith('; opted out of snapshots')
    expect(s.states()[0].state).toStartWith('state from the retention horizon')
    await expect(s.write('counter')).rejects.toThrow('Cannot snapshot plugin counter: it opted out of snapshots (snapshot: false)')
    expect(await s.write()).toEqual([])
  })

  test('lost gaps (a node away past the retention) that a loaded snapshot covers are no alarm any more', async () => {
    const { store, blocks, origin, publish } = await setup()
    store.db.run("UPDATE gaps SET kind = 'lost'")
    const b = await publish(await generateKeyPair('Ed25519'), [['w1', 5]])
    const s = service(store, blocks, [b])
    // The lost gaps status lists as alarms.
    const alarming = (): number[][] => storedStatus(store, Date.now(), s.coverage()).gaps.map((g) => [g.from_seq, g.to_seq])
    expect(alarming()).toEqual([[1, 5]])
    await s.bootstrap()
    expect(store.snapshots.loaded('counter')?.vector).toEqual({ [origin]: 5 })
    expect(alarming()).toEqual([])
    // a later loss beyond the snapshot's vector is an alarm again
    store.gaps.add(origin, 7, 7, 0, 'lost')
    expect(alarming()).toEqual([[7, 7]])
  })

  test("the loaded snapshots' coverage is read once per status call, not once per producer or gap", async () => {
    const { store, blocks, origin, publish } = await setup()
    store.db.run("UPDATE gaps SET kind = 'lost'")
    const b = await publish(await generateKeyPair('Ed25519'), [['w1', 5]])
    const s = service(store, blocks, [b])
    await s.bootstrap()
    // Many producers, each with lost gaps: the loaded vector (one entry per producer) is parsed once, not per producer.
    store.transaction(() => {
      for (let i = 0; i < 200; i++) {
        store.db.run('INSERT INTO producers (producer) VALUES (?)', [`p${i}`])
        store.gaps.add(`p${i}`, 3, 3, 0, 'lost')
      }
    })
    const loaded = store.snapshots.loaded.bind(store.snapshots)
    let reads = 0
    store.snapshots.loaded = (plugin) => {
      reads++
      return loaded(plugin)
    }
    const covered = s.coverage()
    const stored = storedStatus(store, Date.now(), covered)
    expect(stored.gaps_total).toBe(200)
    expect(covered(origin)).toBe(5)
    expect(reads).toBe(1)
  })

  test('a plugin missing history names each producer once, however many gaps it has: the status line and the snapshot refusal stay short', async () => {
    const { store, blocks, origin } = await setup()
    // A member that skips every other seq after the horizon 1..5: a lost gap per event.
    store.transaction(() => {
      for (let seq = 7; seq <= 10_000; seq += 2) store.gaps.add(origin, seq, seq, 0, 'lost')
    })
    const s = service(store, blocks, [])
    const state = s.states()[0].state
    expect(state).toStartWith(`state from the retention horizon (history before ${origin} seq 10000 is not in it)`)
    expect(state.length).toBeLessThan(400)
    const refusal = await s.write('counter').then(
      () => '',
      (err: Error) => err.message
    )
    expect(refusal).toContain(`its state here misses ${origin} seq 1..9999 (4998 gaps)`)
    expect(refusal.length).toBeLessThan(400)
  })

  test("a trusted snapshot whose vector claims seqs beyond the heads this node has is not loaded (it would pass over those producers' events for ever) and not counted against its writer: it waits", async () => {
    const { store, blocks, origin, publish } = await setup()
    const liar = await publish(await generateKeyPair('Ed25519'), [['w1', 5]], { [origin]: 1_000_000_000 })
    const rejected: string[] = []
    const events = new CairnEventBus()
    events.addEventListener('peer:rejected', (e) => rejected.push(`${e.detail.reason} ${e.detail.peer}`))
    const s = new Snapshots(
      { self: SELF, store, log: silentLog, metrics: new Metrics(), events },
      {
        plugins: [counter],
        privateKey: undefined as unknown as PrivateKey,
        put: async () => {
          throw new Error('not written here')
        },
        getBlock: async (cid: CID) => blocks.get(cid.toString())!,
        trusted: () => [liar],
        fetchTimeout: 1000,
        loaded: () => {}
      }
    )
    await s.bootstrap()
    expect(store.snapshots.allLoaded()).toEqual([])
    expect(store.db.all('SELECT * FROM counted')).toEqual([])
    // not counted against the writer: its newer head of that producer may just not have arrived here yet
    expect(rejected).toEqual([])
    expect(s.states()[0].state).toContain(`waiting for a snapshot: cannot use one yet: the snapshot of ${liar} claims seq 1000000000 of ${origin}, beyond that producer's head here (seq 8)`)
  })

  test('a snapshot naming a producer whose head this node does not have yet waits; it is loaded once the head is known', async () => {
    const { store, blocks, origin, publish } = await setup()
    const stranger = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    const b = await publish(await generateKeyPair('Ed25519'), [['w1', 5]], { [origin]: 5, [stranger]: 3 })
    const s = service(store, blocks, [b])
    await s.bootstrap()
    expect(store.snapshots.allLoaded()).toEqual([])
    expect(s.states()[0].state).toContain(`claims seq 3 of ${stranger}, and this node has no head of ${stranger} yet`)
    store.producers.putHead({ producer: stranger, seq: 3, root: 'bafkqaaa', hlc: '1800000000000-0000', acks: {}, signed: new Uint8Array(), receivedAt: 0 })
    await s.bootstrap()
    expect(store.snapshots.loaded('counter')?.vector).toEqual({ [origin]: 5, [stranger]: 3 })
  })

  test('a snapshot made by another version of the plugin (other migrations: other tables or columns) is not loaded, and says why; the same version is', async () => {
    const { store, blocks, origin } = await setup()
    const key = await generateKeyPair('Ed25519')
    const producer = peerIdFromPrivateKey(key).toString()
    const put = async (migrations: number, seq: number): Promise<void> => {
      const snapshot: Snapshot = {
        format: 'cairn.snapshot/1',
        plugin: 'counter',
        producer,
        created_at: new Date(0).toISOString(),
        migrations,
        vector: { [origin]: 5 },
        tables: { counted: { columns: ['w', 'n'], rows: [['w1', 5]] } }
      }
      const file = await fileBlock(await signSnapshot(snapshot, key))
      const dir = await directoryBlock([{ name: 'counter.json', cid: file.cid, size: file.bytes.length }])
      const root = await directoryBlock([{ name: SNAPSHOTS_DIR, cid: dir.cid, size: dir.size }])
      for (const b of [file, dir, root]) blocks.set(b.cid.toString(), b.bytes)
      store.producers.putHead({ producer, seq, root: root.cid.toString(), hlc: `180000000000${seq}-0000`, acks: {}, signed: new Uint8Array(), receivedAt: 0 })
    }
    await put(2, 1)
    const s = service(store, blocks, [producer])
    await s.bootstrap()
    expect(store.snapshots.allLoaded()).toEqual([])
    expect(s.states()[0].state).toContain(`the snapshot of ${producer} was made by a version of counter with 2 migration(s); this node runs 1`)
    await put(1, 2)
    await s.bootstrap()
    expect(store.snapshots.loaded('counter')?.producer).toBe(producer)
  })

  test('a written snapshot records how many migrations made its tables', async () => {
    const { store, blocks } = await setup()
    store.db.run('DELETE FROM gaps')
    let written: Uint8Array | undefined
    const s = new Snapshots(
      { self: SELF, store, log: silentLog, metrics: new Metrics(), events: new CairnEventBus() },
      {
        plugins: [counter],
        privateKey: await generateKeyPair('Ed25519'),
        put: async (_plugin, bytes) => {
          written = bytes
          return { cid: 'bafkqaaa' }
        },
        getBlock: async (cid: CID) => blocks.get(cid.toString())!,
        trusted: () => [],
        fetchTimeout: 1000,
        loaded: () => {}
      }
    )
    await s.write('counter')
    expect(JSON.parse(new TextDecoder().decode(written)).snapshot.migrations).toBe(1)
  })

  test('a plugin whose tables or columns need quoted names is not snapshotted (other nodes read plain names only), and says which', async () => {
    const quoted = definePlugin({
      name: 'quoted',
      handles: { 'test.quoted': { version: 1, payload: v.object({ w: v.string() }) } },
      migrations: ['CREATE TABLE "my docs" (w TEXT, "a b" TEXT)', 'CREATE TABLE constructor (w TEXT)'],
      apply() {}
    })
    const db = await openDatabase(':memory:')
    migrate(db)
    const store = new Store(db)
    migratePlugins(store.pluginState, [{ plugin: quoted, source: 'test' }])
    const s = new Snapshots(
      { self: SELF, store, log: silentLog, metrics: new Metrics(), events: new CairnEventBus() },
      {
        plugins: [quoted],
        privateKey: await generateKeyPair('Ed25519'),
        put: async () => {
          throw new Error('never written')
        },
        getBlock: async () => {
          throw new Error('no blocks')
        },
        trusted: () => [],
        fetchTimeout: 1000,
        loaded: () => {}
      }
    )
    await expect(s.write('quoted')).rejects.toThrow('table "my docs", table "constructor", column "a b" of my docs is not')
    // unnamed, the plugin is passed over with a warning, as others that cannot be snapshotted
    expect(await s.write()).toEqual([])
    store.close()
  })

  test('a plugin whose migrations rename a table is neither snapshotted nor loaded: no snapshot could be told complete', async () => {
    const renamed = definePlugin({
      name: 'counter',
      handles: { 'test.counted': { version: 1, payload: v.object({ w: v.string() }) } },
      migrations: ['CREATE TABLE old_counted (w TEXT PRIMARY KEY, n INTEGER NOT NULL)', 'ALTER TABLE old_counted RENAME TO counted'],
      apply() {}
    })
    const { store, blocks, publish } = await setup()
    const b = await publish(await generateKeyPair('Ed25519'), [], undefined, {})
    const s = new Snapshots(
      { self: SELF, store, log: silentLog, metrics: new Metrics(), events: new CairnEventBus() },
      {
        plugins: [renamed],
        privateKey: await generateKeyPair('Ed25519'),
        put: async () => {
          throw new Error('never written')
        },
        getBlock: async (cid: CID) => blocks.get(cid.toString())!,
        trusted: () => [b],
        fetchTimeout: 1000,
        loaded: () => {}
      }
    )
    store.db.run("INSERT INTO counted (w, n) VALUES ('w6', 1)")
    await s.bootstrap()
    expect(store.snapshots.allLoaded()).toEqual([])
    expect(s.states()[0].state).toContain('its migrations create old_counted, which is not in cairn.db')
    expect(store.db.all('SELECT w FROM counted')).toEqual([{ w: 'w6' }])
    store.db.run('DELETE FROM gaps')
    await expect(s.write('counter')).rejects.toThrow('old_counted, which its migrations create, is not in cairn.db')
  })

  test('a plugin with dead letters or held events is not snapshotted: its vector would claim events its tables lack, and a loader would pass them over for ever', async () => {
    const { store, blocks, origin } = await setup()
    store.db.run('DELETE FROM gaps')
    const s = new Snapshots(
      { self: SELF, store, log: silentLog, metrics: new Metrics(), events: new CairnEventBus() },
      {
        plugins: [counter],
        privateKey: await generateKeyPair('Ed25519'),
        put: async () => ({ cid: 'bafkqaaa' }),
        getBlock: async (cid: CID) => blocks.get(cid.toString())!,
        trusted: () => [],
        fetchTimeout: 1000,
        loaded: () => {}
      }
    )
    store.pluginState.deadLetter('counter', { producer: origin, event_id: 'e-dead' }, 5, 'boom', 0)
    await expect(s.write('counter')).rejects.toThrow('Cannot snapshot plugin counter: 1 event(s) it has not applied (dead letters or held events)')
    store.pluginState.clearDeadLetter('counter', { producer: origin, event_id: 'e-dead' })
    store.pluginState.hold('counter', { producer: origin, event_id: 'e-held' }, 2, 0)
    await expect(s.write('counter')).rejects.toThrow('Cannot snapshot plugin counter: 1 event(s) it has not applied (dead letters or held events)')
    store.db.run('DELETE FROM plugin_held')
    expect((await s.write('counter')).map((w) => w.plugin)).toEqual(['counter'])
  })
})

describe('whom snapshots are loaded from', () => {
  const A = '12D3KooWA1111111111111111111111111111111111111111111'
  const B = '12D3KooWB2222222222222222222222222222222222222222222'
  const R = '12D3KooWR3333333333333333333333333333333333333333333'
  const membership = { current: () => [A, B], isMember: (p: string) => p === A || p === B }

  test('members: the current members; none without a list', () => {
    expect(trustedForSnapshots('members', membership)).toEqual([A, B])
    expect(trustedForSnapshots('members', { current: () => undefined, isMember: () => undefined })).toEqual([])
  })

  test("named peers, except one the members list refuses (a removed member, a non-member): its snapshot would replace a plugin's tables", () => {
    expect(trustedForSnapshots(`${A}, ${R}`, membership)).toEqual([A])
    expect(trustedForSnapshots(`${A},${R}`, { current: () => undefined, isMember: () => undefined })).toEqual([A, R])
  })
})

describe('a snapshot of a plugin with virtual tables', () => {
  test('holds the FTS5 and R*Tree tables its migrations create, and loads into ones whose indexes answer', async () => {
    const docs = definePlugin({
      name: 'docs',
      handles: { 'test.doc': { version: 1, payload: v.object({ body: v.string() }) } },
      migrations: ['CREATE VIRTUAL TABLE docs USING fts5(body)', 'CREATE VIRTUAL TABLE spans USING rtree(id, lo, hi)'],
      apply: (event, { db }) => void db.run('INSERT INTO docs (body) VALUES (?)', [event.payload.body])
    })
    const open = async (): Promise<Store> => {
      const db = await openDatabase(':memory:')
      migrate(db)
      const store = new Store(db)
      migratePlugins(store.pluginState, [{ plugin: docs, source: 'test' }])
      return store
    }
    const from = await open()
    from.pluginDb().run('INSERT INTO docs (body) VALUES (?), (?)', ['red fox', 'blue whale'])
    from.pluginDb().run('INSERT INTO spans (id, lo, hi) VALUES (1, 0, 10), (2, 20, 30)')
    const tables = from.snapshots.dump(tablesOf(docs))
    expect(Object.keys(tables).sort()).toEqual(['docs', 'spans'])
    const to = await open()
    to.transaction(() => {
      to.snapshots.replace(tablesOf(docs), tables, { plugin: 'docs', producer: SELF, vector: {}, created_at: new Date().toISOString() }, Date.now())
    })
    expect(to.pluginDb().all("SELECT body FROM docs WHERE docs MATCH 'whale'")).toEqual([{ body: 'blue whale' }])
    expect(to.pluginDb().all('SELECT id FROM spans WHERE lo <= 25 AND hi >= 25')).toEqual([{ id: 2 }])
    from.close()
    to.close()
  })
})

describe('a snapshot of a plugin with FTS5 tables of each kind', () => {
  const plugin = (migrations: string[]) => definePlugin({ name: 'docs', handles: { 'test.doc': { version: 1, payload: v.object({ body: v.string() }) } }, migrations, apply() {} })
  const open = async (p: ReturnType<typeof plugin>): Promise<Store> => {
    const db = await openDatabase(':memory:')
    migrate(db)
    const store = new Store(db)
    migratePlugins(store.pluginState, [{ plugin: p, source: 'test' }])
    return store
  }
  const load = (to: Store, p: ReturnType<typeof plugin>, tables: ReturnType<Store['snapshots']['dump']>): void =>
    to.transaction(() => to.snapshots.replace(tablesOf(p), tables, { plugin: 'docs', producer: SELF, vector: {}, created_at: new Date().toISOString() }, Date.now()))

  test('one with its own content keeps its rowids (what other rows know its rows by)', async () => {
    const p = plugin(['CREATE VIRTUAL TABLE docs USING fts5(body)'])
    const from = await open(p)
    from.pluginDb().run('INSERT INTO docs (rowid, body) VALUES (7, ?), (9, ?)', ['red fox', 'blue whale'])
    const to = await open(p)
    load(to, p, from.snapshots.dump(tablesOf(p)))
    expect(to.pluginDb().all("SELECT rowid AS id, body FROM docs WHERE docs MATCH 'whale'")).toEqual([{ id: 9, body: 'blue whale' }])
    from.close()
    to.close()
  })

  test('one with external content (content=TABLE, kept by triggers) is rebuilt from its content table, not indexed twice', async () => {
    const p = plugin([
      `CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
       CREATE VIRTUAL TABLE notes_fts USING fts5(body, content='notes', content_rowid='id');
       CREATE TRIGGER notes_ai AFTER INSERT ON notes BEGIN INSERT INTO notes_fts (rowid, body) VALUES (new.id, new.body); END;
       CREATE TRIGGER notes_ad AFTER DELETE ON notes BEGIN INSERT INTO notes_fts (notes_fts, rowid, body) VALUES ('delete', old.id, old.body); END`
    ])
    const from = await open(p)
    from.pluginDb().run('INSERT INTO notes (id, body) VALUES (7, ?), (9, ?)', ['red fox', 'blue whale'])
    const tables = from.snapshots.dump(tablesOf(p))
    expect(Object.keys(tables)).toEqual(['notes'])
    const to = await open(p)
    to.pluginDb().run('INSERT INTO notes (id, body) VALUES (1, ?)', ['a row the snapshot replaces'])
    // as a snapshot made before external content was left out holds it
    load(to, p, { ...tables, notes_fts: { columns: ['body'], rows: [['blue whale'], ['red fox']] } })
    expect(to.pluginDb().all("SELECT rowid AS id, body FROM notes_fts WHERE notes_fts MATCH 'whale OR fox OR replaces' ORDER BY rowid")).toEqual([
      { id: 7, body: 'red fox' },
      { id: 9, body: 'blue whale' }
    ])
    // FTS5's own check of its index against its content
    to.pluginDb().run("INSERT INTO notes_fts (notes_fts, rank) VALUES ('integrity-check', 1)")
    from.close()
    to.close()
  })

  test("a contentless one (content='') cannot be carried: named as such, never dumped or loaded empty", async () => {
    const p = plugin(["CREATE VIRTUAL TABLE docs USING fts5(body, content='')", 'CREATE TABLE plain (x INTEGER)'])
    const store = await open(p)
    expect(store.snapshots.uncarried(tablesOf(p))).toEqual(['docs'])
    expect(() => store.snapshots.dump(tablesOf(p))).toThrow('contentless FTS5 table')
    expect(() => load(store, p, {})).toThrow('contentless FTS5 table')
    store.close()
  })

  test('contentless tables are found however their names and content= are written, FTS4 too (a swap or a snapshot would lose their index)', async () => {
    const p = plugin([
      "CREATE VIRTUAL TABLE main.a USING fts5(body, content='')",
      'CREATE VIRTUAL TABLE "b b" USING fts5(body, content=[])',
      'CREATE VIRTUAL TABLE [c] USING fts5(body, content=``)',
      'CREATE VIRTUAL TABLE `d` USING fts4(body, content="")',
      "CREATE VIRTUAL TABLE e USING fts4(body, content='plain')",
      'CREATE TABLE "main"."plain" (body TEXT)'
    ])
    expect(tablesOf(p)).toEqual(['a', 'b b', 'c', 'd', 'e', 'plain'])
    const store = await open(p)
    expect(store.snapshots.uncarried(tablesOf(p))).toEqual(['a', 'b b', 'c', 'd'])
    expect(() => store.snapshots.dump(['d'])).toThrow('contentless FTS4 table')
    store.close()
  })

  test('tables and columns whose names need quoting are carried; a read-only view of an index is not; a snapshot lacking a table or naming a column the table lacks is refused', async () => {
    const p = plugin([
      'CREATE TABLE "my docs" ("a b" TEXT NOT NULL, "say ""hi""" TEXT)',
      'CREATE VIRTUAL TABLE words USING fts5(body)',
      'CREATE VIRTUAL TABLE words_vocab USING fts5vocab(words, row)',
      'CREATE VIRTUAL TABLE langs USING fts4(body, languageid="lid")'
    ])
    const from = await open(p)
    from.pluginDb().run('INSERT INTO "my docs" ("a b", "say ""hi""") VALUES (?, ?)', ['one', 'x'])
    from.pluginDb().run('INSERT INTO words (rowid, body) VALUES (5, ?)', ['alpha beta'])
    from.pluginDb().run('INSERT INTO langs (docid, body, lid) VALUES (8, ?, 2)', ['gamma'])
    const tables = from.snapshots.dump(tablesOf(p))
    expect(Object.keys(tables).sort()).toEqual(['langs', 'my docs', 'words'])
    const to = await open(p)
    load(to, p, tables)
    expect(to.pluginDb().all('SELECT * FROM "my docs"')).toEqual([{ 'a b': 'one', 'say "hi"': 'x' }])
    expect(to.pluginDb().all("SELECT term, doc FROM words_vocab WHERE term = 'alpha'")).toEqual([{ term: 'alpha', doc: 1 }])
    // FTS4's languageid column, hidden from SELECT *, comes with its rows
    expect(to.pluginDb().all("SELECT docid, lid FROM langs WHERE langs MATCH 'gamma' AND lid = 2")).toEqual([{ docid: 8, lid: 2 }])
    // as a snapshot of an older version of the plugin (or of cairn) holds it: the table would be left empty
    expect(() => load(to, p, { words: tables.words })).toThrow('the snapshot lacks table(s) my docs')
    expect(() => load(to, p, { ...tables, 'my docs': { columns: ['"a b"); DROP TABLE words; --'], rows: [['x']] } })).toThrow('which the table does not have')
    expect(to.pluginDb().all('SELECT * FROM "my docs"')).toEqual([{ 'a b': 'one', 'say "hi"': 'x' }])
    from.close()
    to.close()
  })
})
