import { HeadLimiter } from '../p2p/headLimiter.ts'
import { CID } from 'multiformats/cid'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import type { NodeConfig } from '../config/catalog.ts'
import { DataDirError, UsageError } from '../errors.ts'
import { dataPaths } from '../datadir/layout.ts'
import { assertDataDir, loadApiToken, loadIdentity, loadSwarmKey } from '../datadir/load.ts'
import { lockDataDir } from '../datadir/lock.ts'
import { clearRunInfo, writeRunInfo } from '../datadir/runInfo.ts'
import { networkId } from '../datadir/swarmKey.ts'
import { openDatabase, type SqlDatabase } from '../runtime/sqlite.ts'
import { serve, type HttpServer } from '../runtime/serve.ts'
import { migrate } from '../store/migrations.ts'
import { collect, openBlockDatabase, SqliteBlockstore } from '../store/blockstore.ts'
import { createIpfs, type CairnIpfs } from '../p2p/ipfs.ts'
import { HeadExchange } from '../p2p/headExchange.ts'
import { BlockExchange, MAX_BATCH } from '../p2p/blockExchange.ts'
import { announceWanted, type AnnouncingBroker } from '../p2p/announce.ts'
import { createHttpApp } from '../http/app.ts'
import { HybridClock } from '../model/hlc.ts'
import { outbox, type Outbox } from '../publish/outbox.ts'
import { Syncer } from '../sync/syncer.ts'
import { busRoot } from '../unixfs/busRoot.ts'
import { housekeeper, type Housekeeper } from '../housekeeping/housekeeper.ts'
import { loadPlugins } from '../plugins/load.ts'
import { PluginHost } from '../plugins/host.ts'
import { BUILTIN_PLUGINS } from '../../plugins/mod.ts'
import { verifyHead, withBlocks } from '../model/head.ts'
import type { EventEnvelope } from '../model/envelope.ts'
import type { PublishResult } from '../model/publishRequest.ts'
import { createLogger, type Log } from '../log/logger.ts'
import { storedStatus } from './status.ts'
import { loadAccessRules, type AccessRules } from '../config/access.ts'
import { Metrics } from '../metrics/metrics.ts'
import { streamEvents } from '../http/stream.ts'
import { VERSION } from '../version.ts'
import { trace } from '../log/trace.ts'
import { Store } from '../store/store.ts'
import { CairnEventBus } from './events.ts'
import type { Components } from './components.ts'

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|::1)$/

/** @returns whether a host name or address is on the loopback interface */
export function isLoopback (host: string): boolean {
  return LOOPBACK.test(host)
}

/** Options that only tests and embedders set. */
export interface NodeExtras {
  log?: Log
  /** hooks called after new events are in the events table (own and fetched) */
  onEvents?: (events: EventEnvelope[]) => void
}

/** Typed node events, as libp2p names them. */
export interface CairnNodeEvents {
  'events:ingested': CustomEvent<EventEnvelope[]>
}

/**
 * A cairn node: the data directory, SQLite, the embedded Helia node, the outbox, sync and the loopback endpoint.
 * One lifecycle: `start()` then `stop()`, each safe to call twice.
 */
export class CairnNode extends EventTarget {
  readonly config: NodeConfig
  readonly log: Log
  status: 'stopped' | 'starting' | 'started' | 'stopping' = 'stopped'
  db!: SqlDatabase
  store!: Store
  /** the typed events every service of this node dispatches */
  readonly events = new CairnEventBus()
  blocks!: SqliteBlockstore
  ipfs!: CairnIpfs
  outbox!: Outbox
  syncer!: Syncer
  housekeeper!: Housekeeper
  plugins!: PluginHost
  peerId!: PeerId
  network!: string
  http?: HttpServer
  private readonly extras: NodeExtras
  private release?: () => void
  private exchange?: HeadExchange
  private timers: Array<ReturnType<typeof setInterval>> = []
  private startedAt = 0
  private readonly clock = new HybridClock()
  readonly metrics = new Metrics()
  access: AccessRules = { policy: new Map() }
  private headLimiter?: HeadLimiter
  blockExchange!: BlockExchange
  private readonly rejectLogged = new Map<string, number>()
  private readonly waiters = new Set<() => void>()
  /** per CID, the network fetches that a block stored by another path (a hint, a bulk batch) ends */
  private readonly fetching = new Map<string, Set<() => void>>()
  /** the blocks the latest hints carried (up to 2 MiB): the walks they start read them next, from here */
  private readonly hinted = new Map<string, Uint8Array>()
  private hintedBytes = 0

  constructor (config: NodeConfig, extras: NodeExtras = {}) {
    super()
    this.config = config
    this.extras = extras
    this.log = extras.log ?? createLogger({ level: config['log-level'], format: config['log-format'] })
  }

  /** @returns what every service of this node is built from (once the databases are open) */
  get components (): Components {
    return { self: this.peerId.toString(), store: this.store, blocks: this.blocks, log: this.log, metrics: this.metrics, clock: this.clock, events: this.events }
  }

  /** @returns the topic on which new heads are hinted */
  get headsTopic (): string {
    return `cairn/${this.network}/heads`
  }

  /**
   * Starts the node.
   *
   * @throws UsageError for a non-loopback --http without --force-http; DataDirError, DataDirBusyError, AddressInUseError
   */
  async start (): Promise<void> {
    if (this.status === 'started' || this.status === 'starting') return
    this.status = 'starting'
    const cfg = this.config
    if (!isLoopback(cfg.http.host) && !cfg['force-http']) {
      throw new UsageError(`Cannot listen on --http ${cfg.http.host}:${cfg.http.port}: the endpoint is loopback-only (127.0.0.1 or ::1); pass --force-http to bind another address on purpose`)
    }
    for (const a of [...cfg.listen, ...cfg.bootstrap]) {
      try { multiaddr(a) } catch (err) { throw new UsageError(`Invalid multiaddr ${a}: ${(err as Error).message}`) }
    }
    assertDataDir(cfg.data)
    const paths = dataPaths(cfg.data)
    this.release = lockDataDir(cfg.data)
    try {
      const { privateKey, peerId } = await loadIdentity(cfg.data)
      this.peerId = peerId
      const swarmKey = loadSwarmKey(cfg.data)
      const token = loadApiToken(cfg.data)
      this.network = await networkId(swarmKey)
      this.access = loadAccessRules(cfg.members, cfg.policy, cfg.data)
      try {
        this.db = await openDatabase(paths.database)
        migrate(this.db)
        this.store = new Store(this.db)
      } catch (err) {
        throw new DataDirError(`Cannot open ${paths.database}: ${(err as Error).message}; the database is damaged or from a newer cairn: restore it from a backup (see docs/operations.md)`)
      }
      try {
        this.blocks = new SqliteBlockstore(await openBlockDatabase(paths.blocks))
        this.blocks.db.get('SELECT count(*) FROM blocks')
      } catch (err) {
        throw new DataDirError(`Cannot open ${paths.blocks}: ${(err as Error).message}; restore it from a backup, or move it away to start with an empty block store (peers' events are fetched again; this node's unpruned files are lost)`)
      }
      this.plugins = new PluginHost({
        db: this.db,
        plugins: await loadPlugins(BUILTIN_PLUGINS, cfg.plugins),
        log: this.log,
        publish: async (r) => await this.publish(r),
        onApplied: (plugin, event, ms) => {
          this.metrics.applied.inc({ type: event.type, plugin })
          this.metrics.applyDuration.observe({ plugin }, ms / 1000)
        },
        onProgress: () => { for (const wake of [...this.waiters]) wake() }
      })
      await this.plugins.start()
      this.ipfs = await createIpfs({ privateKey, swarmKey, listen: cfg.listen, blockstore: this.blocks, datastorePath: paths.datastore, network: this.network, headsTopic: this.headsTopic })

      const self = peerId.toString()
      this.outbox = outbox({
        privateKey,
        maxBatch: cfg['max-batch'],
        maxEventSize: cfg['max-event-size'],
        maxDepth: cfg['max-depth'],
        validate: (type, version, payload) => this.plugins.validatePublish(type, version, payload),
        acks: () => this.acks()
      })(this.components)
      this.events.addEventListener('outbox:committed', ({ detail: { head, events, blocks } }) => {
        this.announceBlocks(blocks.map((b) => b.cid))
        // A small commit travels whole in the hint: receivers need no bitswap round trip.
        const size = blocks.reduce((n, b) => n + b.bytes.length, 0)
        this.announce(size <= 96 * 1024 && blocks.length <= 256 ? withBlocks(head, blocks) : head)
        trace('commit.announced', events.at(-1)?.seq)
        this.ingested(events)
      })
      this.events.addEventListener('outbox:pruned', ({ detail: { head } }) => { this.announce(head) })
      this.outbox.start()
      this.syncer = new Syncer({
        db: this.db,
        self,
        clock: this.clock,
        getBlock: async (cid, options) => await this.getBlock(cid, options),
        getBlocks: async (producer, cids, options) => await this.getBlocks(producer, cids, options),
        limits: { maxEventSize: cfg['max-event-size'], maxDepth: cfg['max-depth'], maxFilesPerWalk: cfg['max-files-per-walk'] },
        fetchTimeout: cfg['fetch-timeout'],
        storeBlocks: (blocks) => {
          this.blocks.db.transaction(() => { for (const b of blocks) this.blocks.putSync(b.cid, b.bytes) })
          this.remember(blocks)
          this.announceBlocks(blocks.map((b) => b.cid))
        },
        isMember: this.access.members == null ? undefined : (p) => this.access.members!.has(p),
        checkEvent: (e) => {
          const allowed = this.access.policy.get(e.type)
          if (allowed != null && !allowed.has(e.producer)) return { reason: 'policy', detail: `${e.producer} may not produce ${e.type} (see the policy setting)` }
          return undefined
        },
        onIngested: (events) => { this.ingested(events) },
        onHead: () => { this.metrics.headsReceived.inc({ result: 'new' }) },
        onProgress: (p) => { this.progress(p) },
        onReject: (reason, detail, ctx) => { this.reject(reason, `${ctx.producer ?? ''}/${ctx.path ?? ''}: ${detail}`, ctx.producer ?? 'unknown') },
        log: (level, msg, fields) => { this.log[level](msg, fields) }
      })

      this.housekeeper = housekeeper({
        outbox: this.outbox,
        retention: cfg.retention,
        retentionMax: cfg['retention-max'],
        eventsRetention: cfg['events-retention'],
        members: () => this.access.members == null ? undefined : [...this.access.members.keys()],
        processed: () => this.acks()[self] ?? 0
      })(this.components)
      this.housekeeper.start()

      await this.ipfs.start()
      const libp2p = this.ipfs.libp2p
      this.exchange = new HeadExchange({
        libp2p,
        heads: () => this.syncer.knownHeads(),
        onHead: async (bytes, from) => { await this.offerHead(bytes, from) },
        log: this.log
      })
      await this.exchange.start()
      this.blockExchange = new BlockExchange({ libp2p, get: (cid) => this.blocks.getSync(cid), log: this.log })
      await this.blockExchange.start()
      const pubsub = libp2p.services.pubsub
      // A hint's signature is checked here, before gossipsub relays it, once the sending peer's rate
      // limit lets it through; the check's result is reused when the hint is applied.
      pubsub.topicValidators.set(this.headsTopic, async (peer, msg) => {
        trace('hint.validating')
        if (!await this.limiter().admit(msg.data, peer.toString())) return TopicValidatorResult.Ignore
        try {
          const head = await verifyHead(msg.data)
          trace('hint.verified', head.seq)
          return TopicValidatorResult.Accept
        } catch {
          return TopicValidatorResult.Reject
        }
      })
      pubsub.subscribe(this.headsTopic)
      // Hints are unsigned gossip (the producer signs the head inside); the validator admitted this one.
      pubsub.addEventListener('gossipsub:message', (evt) => {
        const { msg, propagationSource } = evt.detail
        if (msg.topic !== this.headsTopic) return
        void this.acceptHead(msg.data, propagationSource.toString())
      })
      libp2p.addEventListener('peer:discovery', (evt) => {
        const id = evt.detail.id
        if (libp2p.getConnections(id).length === 0) void libp2p.dial(id, { signal: AbortSignal.timeout(10_000) }).catch(() => {})
      })

      const app = createHttpApp({
        token,
        maxBodySize: cfg['max-body-size'],
        log: this.log,
        ready: () => this.readiness(),
        status: async () => await this.statusJson(),
        publish: async (body) => await this.publish(body),
        publishMany: async (bodies) => await this.outbox.publishMany(bodies),
        extend: (app) => {
          app.get('/metrics', async (c) => {
            this.refreshMetrics()
            return c.body(await this.metrics.text(), 200, { 'content-type': this.metrics.contentType })
          })
          app.get('/v1/stream', (c) => streamEvents(c, { db: this.db, watermark: () => this.plugins.watermark(), wait: async (signal) => await this.waitForEvents(signal) }))
        }
      })
      this.http = serve(app.fetch, cfg.http.host, cfg.http.port)

      this.syncer.start()
      this.dialBootstrap()
      this.timers.push(setInterval(() => { this.dialBootstrap() }, 5000))
      this.timers.push(setInterval(() => { void this.reannounce() }, cfg['announce-interval']))
      this.timers.push(setInterval(() => { void this.housekeeping() }, cfg['housekeeping-interval']))
      // Picks up replay requests written by cairn replay, and retries that came due.
      this.timers.push(setInterval(() => { this.plugins.notify() }, 1000))
      this.startedAt = Date.now()
      writeRunInfo(cfg.data, {
        peer_id: self,
        pid: process.pid,
        version: VERSION,
        addrs: libp2p.getMultiaddrs().map(String),
        http: `${cfg.http.host.includes(':') ? `[${cfg.http.host}]` : cfg.http.host}:${this.http.port}`,
        started_at: new Date(this.startedAt).toISOString()
      })
      this.status = 'started'
      this.log.info('node started', { peer_id: self, addrs: libp2p.getMultiaddrs().map(String), http: `${cfg.http.host}:${this.http.port}`, network: this.network })
    } catch (err) {
      await this.teardown()
      throw err
    }
  }

  /** Stops everything the node started: timers, HTTP, libp2p, databases, the lock. */
  async stop (): Promise<void> {
    if (this.status === 'stopped' || this.status === 'stopping') return
    this.status = 'stopping'
    await this.teardown()
    this.log.info('node stopped')
  }

  private async teardown (): Promise<void> {
    for (const t of this.timers) clearInterval(t)
    this.timers = []
    this.headLimiter?.stop()
    await this.http?.stop().catch(() => {})
    this.http = undefined
    await this.housekeeper?.stop().catch(() => {})
    await this.outbox?.stop().catch(() => {})
    await this.syncer?.stop().catch(() => {})
    await this.plugins?.stop().catch(() => {})
    await this.exchange?.stop().catch(() => {})
    await this.blockExchange?.stop().catch(() => {})
    await this.ipfs?.stop().catch((err: Error) => { this.log.warn(`stopping libp2p: ${err.message}`) })
    this.blocks?.db.close()
    this.db?.close()
    if (this.release != null) clearRunInfo(this.config.data)
    this.release?.()
    this.release = undefined
    this.status = 'stopped'
  }

  /**
   * Publishes an event from the local backend.
   *
   * @returns its event_id, seq and CID, once durable
   */
  async publish (body: unknown): Promise<PublishResult> {
    trace('publish.received')
    return await this.outbox.publish(body)
  }

  /**
   * Offers a head received from a peer, through the per-peer rate limit; bad ones are counted, logged
   * once per peer and reason, and dropped.
   */
  async offerHead (bytes: Uint8Array, from?: PeerId): Promise<void> {
    if (from == null) { await this.acceptHead(bytes, 'unknown'); return }
    await this.limiter().offer(bytes, from.toString())
  }

  private limiter (): HeadLimiter {
    this.headLimiter ??= new HeadLimiter({
      rate: this.config['heads-per-second'],
      accept: async (b, peer) => { await this.acceptHead(b, peer) },
      onCoalesced: () => { this.metrics.headsReceived.inc({ result: 'coalesced' }) },
      onDropped: (peer, detail) => { this.reject('rate_limited', detail, peer) }
    })
    return this.headLimiter
  }

  private async acceptHead (bytes: Uint8Array, peer: string): Promise<void> {
    try {
      const r = await this.syncer.offerHead(bytes)
      if (r === 'old') this.metrics.headsReceived.inc({ result: 'old' })
    } catch (err) {
      const reason = (err as { reason?: string }).reason ?? 'bad_head'
      this.metrics.headsReceived.inc({ result: 'rejected' })
      this.reject(reason, (err as Error).message, peer)
    }
  }

  /** Shows catch-up progress: a bar on a terminal, a log line otherwise. */
  private progress (p: { producer: string, done: number, total: number, rate: number, eta_s: number }): void {
    if (process.stderr.isTTY === true && this.config['log-format'] !== 'json') {
      const width = 30
      const filled = Math.round(width * p.done / p.total)
      process.stderr.write(`\rcatching up ${p.producer.slice(-8)} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${p.done}/${p.total} ${p.rate}/s ETA ${p.eta_s}s${p.done === p.total ? '\n' : ''}`)
    } else {
      this.log.info('catching up', p)
    }
  }

  /**
   * @returns for every producer, the highest seq up to which this node has processed everything,
   * its plugins included: what its heads acknowledge
   */
  acks (): Record<string, number> {
    const pending = new Map(this.db.all<{ producer: string, s: number }>("SELECT producer, min(seq) AS s FROM events WHERE state = 'pending' GROUP BY producer").map((r) => [r.producer, r.s]))
    const acks: Record<string, number> = {}
    for (const r of this.db.all<{ producer: string, processed_seq: number }>('SELECT producer, processed_seq FROM producers')) {
      const p = pending.get(r.producer)
      acks[r.producer] = p == null ? r.processed_seq : Math.min(r.processed_seq, p - 1)
    }
    return acks
  }

  /** Pushes every known head to every connected peer now. */
  async announceAll (): Promise<void> {
    await this.exchange?.pushAll()
  }

  /** Re-signs the own head if the acks moved, then pushes every known head to every peer. */
  private async reannounce (): Promise<void> {
    try {
      const head = await this.outbox.refreshHead()
      if (head != null) this.announce(head)
      this.metrics.headsAnnounced.inc({ via: 'exchange' })
      await this.exchange?.pushAll({ changed: true })
    } catch (err) {
      this.log.warn(`re-announce failed: ${(err as Error).message}`)
    }
  }

  /** Runs pruning and garbage collection once. */
  async housekeeping (): Promise<void> {
    await this.housekeeper.run()
  }

  /** Counts a rejection and logs it, once a minute per peer and reason. */
  private reject (reason: string, detail: string, peer: string): void {
    this.metrics.rejected.inc({ reason })
    const key = `${peer} ${reason}`
    const now = Date.now()
    if ((this.rejectLogged.get(key) ?? 0) + 60_000 > now) return
    this.rejectLogged.set(key, now)
    this.log.warn(`rejected (${reason}): ${detail}`, { peer, reason })
  }

  /** Resolves true when new events arrive, false after 15 s or when `signal` aborts. */
  private async waitForEvents (signal: AbortSignal): Promise<boolean> {
    return await new Promise<boolean>((resolve) => {
      const done = (woken: boolean): void => {
        clearTimeout(timer)
        this.waiters.delete(wake)
        signal.removeEventListener('abort', quiet)
        resolve(woken)
      }
      const wake = (): void => { done(true) }
      const quiet = (): void => { done(false) }
      const timer = setTimeout(quiet, 15_000)
      this.waiters.add(wake)
      signal.addEventListener('abort', quiet)
    })
  }

  private refreshMetrics (): void {
    const stored = storedStatus(this.db)
    this.metrics.peers.set(this.ipfs.libp2p.getPeers().length)
    this.metrics.lagEvents.reset()
    this.metrics.lagSeconds.reset()
    for (const p of stored.producers) {
      this.metrics.lagEvents.set({ producer: p.producer }, p.lag_events)
      this.metrics.lagSeconds.set({ producer: p.producer }, p.lag_ms / 1000)
    }
    this.metrics.lagAlert.set(stored.producers.some((p) => p.lag_ms > this.config['lag-alert']) ? 1 : 0)
    this.metrics.gaps.set(stored.gaps.length)
    this.metrics.quarantined.set(stored.quarantine.count)
    this.metrics.outboxFiles.set(stored.outbox.files)
    this.metrics.deadLetters.set(stored.plugins.dead_letters)
    this.metrics.backlog.set(stored.plugins.backlog)
  }

  private announce (head: Uint8Array): void {
    if (this.config['gossip-hints']) {
      this.metrics.headsAnnounced.inc({ via: 'gossip' })
      void this.ipfs.libp2p.services.pubsub.publish(this.headsTopic, head).catch((err: Error) => { this.log.debug(`gossip publish failed: ${err.message}`) })
    }
  }

  private ingested (events: EventEnvelope[]): void {
    const now = Date.now()
    for (const e of events) {
      this.metrics.ingested.inc({ type: e.type })
      this.metrics.propagation.observe(Math.max(0, now - Date.parse(e.occurred_at)) / 1000)
    }
    trace('events.ingested', events.at(-1)?.seq)
    this.plugins.notify()
    this.extras.onEvents?.(events)
    this.dispatchEvent(new CustomEvent('events:ingested', { detail: events }))
  }

  /**
   * Many blocks for a catch-up: local ones, then in batches over the blocks protocol, from the producer
   * when it is connected (it holds its whole outbox), else from another peer that speaks it.
   */
  private async getBlocks (producer: string, cids: readonly CID[], options: { signal: AbortSignal, onBlocks: (n: number) => void }): Promise<Map<string, Uint8Array>> {
    const out = new Map<string, Uint8Array>()
    const missing: CID[] = []
    for (const cid of cids) {
      const local = this.blocks.getSync(cid)
      if (local != null) out.set(cid.toString(), local)
      else missing.push(cid)
    }
    options.onBlocks(out.size)
    const connected = this.ipfs.libp2p.getPeers()
    const candidates = [...connected.filter((p) => p.toString() === producer), ...connected.filter((p) => p.toString() !== producer)]
    let peer: PeerId | undefined
    for (const p of candidates) if (await this.blockExchange.supports(p)) { peer = p; break }
    if (peer == null) return out
    const batches: CID[][] = []
    for (let i = 0; i < missing.length; i += MAX_BATCH) batches.push(missing.slice(i, i + MAX_BATCH))
    let next = 0
    // A few batches in flight: some are answered while others' blocks are checked and stored.
    await Promise.all([0, 1, 2, 3].map(async () => {
      while (next < batches.length && !options.signal.aborted) {
        const batch = batches[next++]
        const signal = AbortSignal.any([options.signal, AbortSignal.timeout(this.config['fetch-timeout'] * 4)])
        const got = await this.blockExchange.fetch(peer, batch, signal).catch((err: Error) => {
          this.log.debug(`block batch from ${peer.toString()} failed: ${err.message}`)
          return new Map<string, Uint8Array>()
        })
        this.blocks.db.transaction(() => { for (const cid of batch) { const b = got.get(cid.toString()); if (b != null) this.blocks.putSync(cid, b) } })
        this.announceBlocks(batch.filter((cid) => got.has(cid.toString())))
        for (const [k, b] of got) out.set(k, b)
        options.onBlocks(got.size)
      }
    }))
    return out
  }

  /** Keeps the blocks a hint carried for the walk that follows, dropping the oldest beyond 2 MiB. */
  private remember (blocks: ReadonlyArray<{ cid: CID, bytes: Uint8Array }>): void {
    for (const b of blocks) {
      const key = b.cid.toString()
      if (this.hinted.has(key)) continue
      this.hinted.set(key, b.bytes)
      this.hintedBytes += b.bytes.length
    }
    for (const [key, bytes] of this.hinted) {
      if (this.hintedBytes <= 2 * 1024 * 1024) break
      this.hinted.delete(key)
      this.hintedBytes -= bytes.length
    }
  }

  /**
   * Called for blocks written straight to the store (commits, hints, bulk batches): ends this node's
   * own fetches of them, and tells bitswap about those that a peer wants. Bitswap alone would not end
   * an own fetch: told of a block, it cancels the want but leaves its waiter waiting out the timeout.
   */
  private announceBlocks (cids: readonly CID[]): void {
    if (cids.length === 0) return
    if (this.fetching.size > 0) {
      for (const cid of cids) for (const wake of this.fetching.get(cid.toString()) ?? []) wake()
    }
    if (this.ipfs == null) return
    const brokers = (this.ipfs as unknown as { blockBrokers?: AnnouncingBroker[] }).blockBrokers ?? []
    announceWanted(brokers, cids, this.ipfs.libp2p.getPeers())
  }

  private async getBlock (cid: CID, options: { signal: AbortSignal }): Promise<Uint8Array> {
    const key = cid.toString()
    const local = this.hinted.get(key) ?? this.blocks.getSync(cid)
    if (local != null) return local
    // The block may come by another path while bitswap looks for it: a hint that arrived out of order
    // carries it, or a bulk batch. Its arrival ends the fetch.
    const arrived = new AbortController()
    const wake = (): void => { arrived.abort() }
    const wakers = this.fetching.get(key) ?? new Set()
    wakers.add(wake)
    this.fetching.set(key, wakers)
    try {
      return await collect(this.ipfs.blockstore.get(cid, { signal: AbortSignal.any([options.signal, arrived.signal]) }))
    } catch (err) {
      const stored = arrived.signal.aborted ? this.blocks.getSync(cid) : undefined
      if (stored != null) return stored
      throw err
    } finally {
      wakers.delete(wake)
      if (wakers.size === 0) this.fetching.delete(key)
    }
  }

  private dialBootstrap (): void {
    const libp2p = this.ipfs.libp2p
    for (const addr of this.config.bootstrap) {
      const ma = multiaddr(addr)
      const id = ma.getComponents().find((c) => c.name === 'p2p')?.value
      if (id != null && libp2p.getConnections(peerIdFromString(id)).length > 0) continue
      void libp2p.dial(ma, { signal: AbortSignal.timeout(10_000) }).catch((err: Error) => {
        this.log.debug(`cannot reach bootstrap peer ${addr}: ${err.message}`)
      })
    }
  }

  private readiness (): { ready: boolean, reason?: string } {
    if (this.status !== 'started') return { ready: false, reason: `node is ${this.status}` }
    if (this.ipfs.libp2p.status !== 'started') return { ready: false, reason: 'libp2p is not started' }
    try {
      this.db.get('SELECT 1')
    } catch (err) {
      return { ready: false, reason: `database: ${(err as Error).message}` }
    }
    return { ready: true }
  }

  /** @returns the status document of `/status` and `cairn status --json` */
  async statusJson (): Promise<Record<string, unknown>> {
    const libp2p = this.ipfs.libp2p
    const stored = storedStatus(this.db)
    const ready = this.readiness()
    const reasons: string[] = []
    if (!ready.ready) reasons.push(ready.reason ?? 'not ready')
    const lagging = stored.producers.filter((p) => p.lag_ms > this.config['lag-alert'])
    if (lagging.length > 0) reasons.push(`lag over ${this.config['lag-alert']} ms for ${lagging.map((p) => p.producer).join(', ')}`)
    if (stored.gaps.length > 0) reasons.push(`${stored.gaps.length} gap(s): events no longer fetchable`)
    if (stored.plugins.dead_letters > 0) reasons.push(`${stored.plugins.dead_letters} dead letter(s): see cairn dead`)
    return {
      verdict: !ready.ready ? 'failing' : reasons.length > 0 ? 'degraded' : 'healthy',
      reasons,
      bus_root: (await this.busRoot()).toString(),
      peer_id: this.peerId.toString(),
      version: VERSION,
      uptime_s: Math.round((Date.now() - this.startedAt) / 1000),
      listen: libp2p.getMultiaddrs().map(String),
      peers: libp2p.getPeers().map(String),
      network: this.network,
      syncing: this.syncer.busy,
      ...stored
    }
  }

  /** @returns the CID of this node's bus directory */
  async busRoot (): Promise<CID> {
    return await busRoot(this.store.producers.syncedRoots())
  }
}
