/**
 * @module
 * The plugin test kit, published as `@cairn/plugin/test`: runs a plugin against an in-memory cairn
 * database with the host's own runner, so a test sees what a node would do: exactly once, retries with
 * backoff on a clock the test controls, dead letters, held versions, replay.
 *
 * @example
 * ```ts
 * import { testPlugin } from '@cairn/plugin/test'
 * import plugin from './my-plugin.ts'
 *
 * await using t = await testPlugin(plugin)
 * await t.apply([{ type: 'workspace.renamed', payload: { workspace_id: 'w', name: 'Team' } }])
 * t.all('SELECT name FROM workspace_names') // [{ name: 'Team' }]
 * ```
 */
import { uuidv7 } from 'uuidv7'
import { openDatabase } from '../runtime/sqlite.ts'
import { migrate } from '../store/migrations.ts'
import { Store } from '../store/store.ts'
import type { DeadLetter, HeldEvent, ReplaySelect } from '../store/pluginState.ts'
import type { EventEnvelope } from '../model/envelope.ts'
import type { PublishRequest, PublishResult } from '../model/publishRequest.ts'
import type { Log } from '../log/logger.ts'
import { CairnEventBus } from '../node/events.ts'
import { PluginLoadError } from '../errors.ts'
import { checkPlugin } from './load.ts'
import { migratePlugins } from './migrate.ts'
import { processPlugin, type RunContext } from './runner.ts'
import { replayQueued } from './replay.ts'
import { runEffects } from './effects.ts'
import { rebuildIfRequested, requestRebuild } from './rebuild.ts'
import { SDK, type PluginFactory } from './mod.ts'
import type { HandledSchemas, Plugin, PluginDb, PluginSqlValue } from './types.ts'

/** An event to apply: a type and a payload; the envelope's other fields are filled in unless given. */
export interface TestEvent {
  type: string
  payload: unknown
  /** default: the version the plugin handles natively */
  version?: number
  /** a libp2p peer id, or a short name (`'alice'`) that stands for one; default `'producer'` */
  producer?: string
  event_id?: string
  /** default: the kit's clock, later than every earlier event */
  hlc?: string
  occurred_at?: string
  actor?: string
  correlation_id?: string
  causation_id?: string
}

/** One line a plugin logged through `ctx.log`. */
export interface TestLogLine {
  level: 'debug' | 'info' | 'warn' | 'error'
  msg: string
  fields: Record<string, unknown>
}

/** The test kit's settings. */
export interface TestPluginOptions {
  /** attempts before an event is dead-lettered (default 5, as on a node) */
  maxAttempts?: number
  /** the first retry's delay on the kit's clock; each further one doubles it (default 200 ms) */
  backoffMs?: number
  /** the clock's start, in ms (default 1800000000000) */
  now?: number
  /** answers `ctx.publish` in effects (default: records the request and answers with a made-up result) */
  publish?: (request: PublishRequest) => Promise<PublishResult>
}

/** A plugin under test: its database, the events given to it, and what a node would report about them. */
export interface PluginTest {
  /** the plugin as loaded (after `upgrade`, the new release) */
  readonly plugin: Plugin
  /** the plugin's tables (and cairn's), as `ctx.db` sees them */
  readonly db: PluginDb
  /** every event applied so far, with its envelope filled in */
  readonly events: readonly EventEnvelope[]
  /** what the plugin logged */
  readonly logs: readonly TestLogLine[]
  /** what effects published through `ctx.publish` */
  readonly published: readonly PublishRequest[]
  /** the retry clock: `advance(ms)` moves it and runs the retries and effects that became due */
  readonly clock: { now(): number; advance(ms: number): Promise<void> }
  /** stores the events as a node would receive them and runs the plugin over them; @returns their envelopes */
  apply(events: TestEvent | readonly TestEvent[]): Promise<EventEnvelope[]>
  /** runs the plugin again over every stored event from the start, as after a crash; @returns how many it applied anew (0 when exactly once holds) */
  redeliver(): Promise<number>
  /** queues events for replay (`cairn replay`: dead, held or never applied ones) and runs them; @returns how many were queued */
  replay(select?: ReplaySelect): Promise<number>
  /**
   * Replaces the plugin with a new release of it (same name), as a node restarted with the new file: its
   * new migrations run, events held for a version it now reads are applied.
   */
  upgrade<H2 extends HandledSchemas>(next: Plugin<H2> | PluginFactory<H2>): Promise<void>
  /**
   * `cairn plugins rebuild`: re-applies every stored event into fresh tables; @returns how many were applied. The
   * kit's database is in memory, which a second connection cannot open: it rebuilds in one transaction, where a
   * node builds the new tables in a shadow file beside it and swaps them in (the tables come out the same).
   */
  rebuild(): Promise<number>
  /** @returns the rows of a query on the plugin's tables */
  all<T = Record<string, unknown>>(sql: string, params?: readonly PluginSqlValue[]): T[]
  /** @returns the first row of a query, or undefined */
  get<T = Record<string, unknown>>(sql: string, params?: readonly PluginSqlValue[]): T | undefined
  /** @returns how many times the plugin has applied events (each event at most once) */
  appliedCount(): number
  deadLetters(): DeadLetter[]
  held(): HeldEvent[]
  /** @returns how many events wait in the retry queue */
  retrying(): number
  /** closes the database */
  close(): void
  [Symbol.dispose](): void
  [Symbol.asyncDispose](): Promise<void>
}

const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
const PEER_ID = /^(12D3Koo|Qm)[1-9A-HJ-NP-Za-km-z]{40,60}$/

/** The producer name of the events a test applies without one: the kit's own node, `ctx.self` of its effects. */
const OWN_PRODUCER = 'producer'

/** @returns a peer id that stands for a short producer name, the same for the same name */
function peerIdFor(name: string): string {
  if (PEER_ID.test(name)) return name
  let h = 2166136261
  let id = '12D3KooW'
  for (let i = 0; i < 44; i++) {
    h = Math.imul(h ^ name.charCodeAt(i % name.length) ^ i, 16777619) >>> 0
    id += BASE58[h % 58]
  }
  return id
}

/**
 * Loads a plugin (an object or the function form) into an in-memory database with its migrations run.
 *
 * @param plugin the plugin, or its `(sdk) => plugin` factory
 * @param options retries and the clock
 * @returns the plugin under test; dispose of it (`await using`) to close its database
 * @throws PluginLoadError when the plugin's shape or a migration is wrong, as a node would refuse it
 */
export async function testPlugin<H extends HandledSchemas>(plugin: Plugin<H> | PluginFactory<H>, options: TestPluginOptions = {}): Promise<PluginTest> {
  const load = async <X extends HandledSchemas>(p: Plugin<X> | PluginFactory<X>): Promise<Plugin> => checkPlugin(typeof p === 'function' ? await p(SDK) : p, 'test')
  let loaded = await load(plugin)
  const db = await openDatabase(':memory:')
  migrate(db)
  const store = new Store(db)
  try {
    migratePlugins(store.pluginState, [{ plugin: loaded, source: 'test' }])
  } catch (err) {
    db.close()
    throw err
  }
  let now = options.now ?? 1_800_000_000_000
  let lastHlc = ''
  const seqs = new Map<string, number>()
  const events: EventEnvelope[] = []
  const logs: TestLogLine[] = []
  const published: PublishRequest[] = []
  let applied = 0
  const logger = (fields: Record<string, unknown>): Log => {
    const line =
      (level: TestLogLine['level']) =>
      (msg: string, more: Record<string, unknown> = {}): void => {
        logs.push({ level, msg, fields: { ...fields, ...more } })
      }
    return { debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error'), child: (more) => logger({ ...fields, ...more }) }
  }
  const ctx: RunContext = {
    store,
    log: logger({}),
    events: new CairnEventBus(),
    metrics: {
      applied: {
        inc: () => {
          applied++
        }
      },
      applyDuration: { observe: () => {} }
    },
    // The kit's node is the producer of the events applied without one.
    self: peerIdFor(OWN_PRODUCER),
    signal: new AbortController().signal,
    maxAttempts: options.maxAttempts ?? 5,
    backoffMs: options.backoffMs ?? 200,
    now: () => now,
    refusalLogged: new Map()
  }
  const publish =
    options.publish ??
    (async (request: PublishRequest): Promise<PublishResult> => {
      published.push(request)
      return { event_id: request.event_id ?? uuidv7(), seq: published.length, cid: `test-published-${published.length}`, replayed: false }
    })
  function nextHlc(): string {
    const ms = String(now).padStart(13, '0')
    const last = lastHlc.slice(0, 13) === ms ? Number.parseInt(lastHlc.slice(14), 16) + 1 : 0
    lastHlc = `${ms}-${last.toString(16).padStart(4, '0')}`
    return lastHlc
  }
  const run = async (): Promise<void> => {
    rebuildIfRequested(ctx, loaded)
    replayQueued(ctx, loaded)
    processPlugin(ctx, loaded)
    await runEffects(ctx, [loaded], publish)
  }
  const envelope = (e: TestEvent): EventEnvelope => {
    const handler = loaded.handles[e.type]
    if (handler == null) throw new PluginLoadError(`Cannot apply ${e.type}: the plugin "${loaded.name}" does not handle it (it handles ${Object.keys(loaded.handles).join(', ')})`)
    const producer = peerIdFor(e.producer ?? OWN_PRODUCER)
    const seq = (seqs.get(producer) ?? 0) + 1
    seqs.set(producer, seq)
    return {
      event_id: e.event_id ?? uuidv7(),
      type: e.type,
      version: e.version ?? handler.version,
      producer,
      seq,
      hlc: e.hlc ?? nextHlc(),
      occurred_at: e.occurred_at ?? new Date(now).toISOString(),
      ...(e.actor != null ? { actor: e.actor } : {}),
      ...(e.correlation_id != null ? { correlation_id: e.correlation_id } : {}),
      ...(e.causation_id != null ? { causation_id: e.causation_id } : {}),
      payload: e.payload
    }
  }
  const close = (): void => {
    db.close()
  }
  return {
    get plugin() {
      return loaded
    },
    db: store.pluginDb(),
    events,
    logs,
    published,
    clock: {
      now: () => now,
      advance: async (ms) => {
        now += ms
        await run()
      }
    },
    async apply(input) {
      const list = (Array.isArray(input) ? input : [input]) as readonly TestEvent[]
      const added = list.map(envelope)
      store.transaction(() => {
        for (const e of added) store.events.insert(e, `test-${e.producer}-${e.seq}`, now)
      })
      events.push(...added)
      await run()
      return added
    },
    async redeliver() {
      const before = applied
      store.pluginState.setCursor(loaded.name, 0)
      for (const e of events) store.events.insert(e, `test-${e.producer}-${e.seq}`, now)
      await run()
      return applied - before
    },
    async replay(select = { dead: true }) {
      const n = store.pluginState.requestReplay(select, now)
      await run()
      return n
    },
    async upgrade(next) {
      const release = await load(next)
      if (release.name !== loaded.name) throw new PluginLoadError(`Cannot upgrade plugin "${loaded.name}" to "${release.name}": a release keeps the plugin's name`)
      migratePlugins(store.pluginState, [{ plugin: release, source: 'test' }])
      loaded = release
      await run()
    },
    async rebuild() {
      const before = applied
      requestRebuild(store, loaded.name)
      await run()
      return applied - before
    },
    all: (sql, params) => db.all(sql, params),
    get: (sql, params) => db.get(sql, params),
    appliedCount: () => applied,
    deadLetters: () => store.pluginState.deadLetters(),
    held: () => store.pluginState.held(),
    retrying: () => store.pluginState.retryingCount(),
    close,
    [Symbol.dispose]: close,
    [Symbol.asyncDispose]: async () => {
      close()
    }
  }
}
