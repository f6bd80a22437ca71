import { describe, expect, test } from 'bun:test'
import fc from 'fast-check'
import { uuidv7 } from 'uuidv7'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { Store } from '../../src/store/store.ts'
import { migratePlugins } from '../../src/plugins/migrate.ts'
import { processPlugin, type RunContext } from '../../src/plugins/runner.ts'
import { prunable } from '../../src/housekeeping/prune.ts'
import { silentLog } from '../../src/log/logger.ts'
import { Metrics } from '../../src/metrics/metrics.ts'
import { CairnEventBus } from '../../src/node/events.ts'
import type { EventEnvelope } from '../../src/model/envelope.ts'
import workspaceAccess from '../../plugins/workspace-access.ts'

const PRODUCERS = ['12D3KooWA1111111111111111111111111111111111111111111', '12D3KooWB2222222222222222222222222222222222222222222', '12D3KooWC3333333333333333333333333333333333333333333']
const SUBJECTS = ['ann@example.com', 'bob@example.com', 'cy@example.com']
const ROLES = ['viewer', 'member', 'admin', 'owner'] as const
const PERMISSIONS = ['read', 'write', 'member', 'admin', 'owner'] as const
const T0 = 1_800_000_000_000

/** One node of the simulation: its database, running the built-in plugin synchronously. */
class SimNode {
  readonly store: Store
  readonly ctx: RunContext
  constructor(store: Store) {
    this.store = store
    this.ctx = { store, log: silentLog, metrics: new Metrics(), events: new CairnEventBus(), signal: new AbortController().signal, maxAttempts: 1, backoffMs: 1, now: () => T0 }
    migratePlugins(store.pluginState, [{ plugin: workspaceAccess, source: 'built-in' }])
  }

  static async open(): Promise<SimNode> {
    const db = await openDatabase(':memory:')
    migrate(db)
    return new SimNode(new Store(db))
  }

  /** Stores events it did not have and applies them. */
  receive(events: readonly EventEnvelope[]): void {
    this.store.transaction(() => {
      for (const e of events) this.store.events.insert(e, 'bafy', T0)
    })
    processPlugin(this.ctx, workspaceAccess)
  }

  table(): unknown[] {
    return this.store.db.all('SELECT * FROM workspace_access ORDER BY workspace_id, subject, permission')
  }
}

type Step =
  | { kind: 'invite'; producer: number; workspace: number; subject: number; role: number; dt: number }
  | { kind: 'revoke'; producer: number; workspace: number; subject: number; permission: number; dt: number }
  | { kind: 'other'; producer: number; dt: number }
  | { kind: 'sync'; from: number; to: number }
  | { kind: 'housekeep'; producer: number }
  | { kind: 'join' }

const producer = fc.integer({ min: 0, max: PRODUCERS.length - 1 })
// dt 0 makes events of several producers share a millisecond: the order then falls to (producer, event_id).
const dt = fc.integer({ min: 0, max: 3 })
const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('invite' as const),
      producer,
      workspace: fc.integer({ min: 0, max: 1 }),
      subject: fc.integer({ min: 0, max: 2 }),
      role: fc.integer({ min: 0, max: 3 }),
      dt
    })
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('revoke' as const),
      producer,
      workspace: fc.integer({ min: 0, max: 1 }),
      subject: fc.integer({ min: 0, max: 2 }),
      permission: fc.integer({ min: 0, max: 4 }),
      dt
    })
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('other' as const), producer, dt }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('sync' as const), from: producer, to: producer }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('housekeep' as const), producer }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('join' as const) }) }
)

/**
 * Runs a history: producers publish, learn each other's events (sync steps, in any order and delay), and
 * prune their own outbox with the real rules (prunable) at random times. A late joiner joins at each
 * `join` step and takes whatever the producers' outboxes still hold then, and again at the end.
 *
 * @returns the tables of a node that saw every event and of the late joiner, and how many files went
 */
async function run(steps: readonly Step[], retention: number): Promise<{ full: unknown[]; late: unknown[]; pruned: number }> {
  const nodes = await Promise.all(PRODUCERS.map(() => SimNode.open()))
  const full = await SimNode.open()
  const late = await SimNode.open()
  const published: EventEnvelope[][] = PRODUCERS.map(() => [])
  let now = T0
  let pruned = 0
  const kept = (): EventEnvelope[] =>
    published.flatMap((events, p) => {
      const gone = new Set(nodes[p].store.db.all<{ seq: number }>('SELECT seq FROM outbox WHERE pruned_at IS NOT NULL').map((r) => r.seq))
      return events.filter((e) => !gone.has(e.seq))
    })
  const publish = (p: number, delta: number, type: string, payload: unknown): void => {
    now += delta
    const node = nodes[p]
    const seq = published[p].length + 1
    const e: EventEnvelope = { event_id: uuidv7(), type, version: 1, producer: PRODUCERS[p], seq, hlc: `${now}-0000`, occurred_at: new Date(now).toISOString(), payload }
    published[p].push(e)
    node.store.outbox.insert({ seq, event_id: e.event_id, bucket: '2027-01-15/00', name: `${String(seq).padStart(12, '0')}-${e.event_id}.json`, cid: 'bafy', size: 100, created_at: now })
    node.receive([e])
    full.receive([e])
  }
  for (const s of steps) {
    if (s.kind === 'invite') publish(s.producer, s.dt, 'workspace.invited', { workspace_id: `w${s.workspace}`, invitee: SUBJECTS[s.subject], role: ROLES[s.role], invited_by: 'root@example.com' })
    else if (s.kind === 'revoke') publish(s.producer, s.dt, 'permission.revoked', { workspace_id: `w${s.workspace}`, subject: SUBJECTS[s.subject], permission: PERMISSIONS[s.permission] })
    else if (s.kind === 'other') publish(s.producer, s.dt, 'test.unhandled', { n: now })
    else if (s.kind === 'sync') nodes[s.to].receive(published[s.from])
    else if (s.kind === 'join') late.receive(kept())
    else {
      const store = nodes[s.producer].store
      const { seqs, compacted } = prunable(
        store,
        { self: PRODUCERS[s.producer], retention, retentionMax: Number.MAX_SAFE_INTEGER, members: () => [], processed: () => Number.MAX_SAFE_INTEGER },
        { wall: now, guarded: now }
      )
      store.transaction(() => {
        for (const seq of seqs) store.outbox.markPruned(seq, now, compacted.has(seq))
      })
      store.stateKeys.forgetSuperseded(PRODUCERS[s.producer])
      pruned += seqs.length
    }
  }
  late.receive(kept())
  return { full: full.table(), late: late.table(), pruned }
}

describe('keyed compaction', () => {
  test('for random histories, retention and join times, a late joiner that replays what the producers kept has the same workspace_access table as a node that saw everything', async () => {
    let pruned = 0
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 20, maxLength: 120, size: 'max' }), fc.integer({ min: 0, max: 20 }), async (steps, retention) => {
        const r = await run(steps, retention)
        pruned += r.pruned
        expect(r.late).toEqual(r.full)
      }),
      { numRuns: 150 }
    )
    // The property is about pruned histories: most runs did prune.
    expect(pruned).toBeGreaterThan(500)
  }, 120_000)

  test('a revocation is kept while it is the newest event of its key, however old; an invitation it fully supersedes goes', async () => {
    const p = PRODUCERS[0]
    const node = await SimNode.open()
    const mk = (seq: number, type: string, payload: unknown): EventEnvelope => ({
      event_id: uuidv7(),
      type,
      version: 1,
      producer: p,
      seq,
      hlc: `${T0 + seq}-0000`,
      occurred_at: new Date(T0).toISOString(),
      payload
    })
    const events = [
      mk(1, 'workspace.invited', { workspace_id: 'w', invitee: 'ann@example.com', role: 'viewer', invited_by: 'root@example.com' }),
      mk(2, 'permission.revoked', { workspace_id: 'w', subject: 'ann@example.com', permission: 'read' }),
      mk(3, 'workspace.invited', { workspace_id: 'w', invitee: 'bob@example.com', role: 'member', invited_by: 'root@example.com' }),
      mk(4, 'permission.revoked', { workspace_id: 'w', subject: 'bob@example.com', permission: 'write' })
    ]
    for (const e of events) node.store.outbox.insert({ seq: e.seq, event_id: e.event_id, bucket: '2027-01-15/00', name: `${e.seq}`, cid: 'bafy', size: 1, created_at: T0 })
    node.receive(events)
    const r = prunable(node.store, { self: p, retention: 0, retentionMax: 1, members: () => [], processed: () => 4 }, { wall: T0 + 10 ** 9, guarded: T0 + 10 ** 9 })
    // 1 is superseded on its one key; 3 still decides read and member for bob; 2 and 4 are the newest of theirs.
    expect(r).toEqual({ seqs: [1], compacted: new Set([1]), heldBackBy: [] })
  })
})
