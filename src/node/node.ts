import { Snapshots, trustedForSnapshots, type WrittenSnapshot } from '../plugins/snapshots.ts'
import { resolve } from 'node:path'
import type { PeerId } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import type { NodeConfig } from '../config/catalog.ts'
import { clearRunInfo, writeRunInfo } from '../datadir/runInfo.ts'
import { NotFoundError, NotStartedError, ProducerDivergedError, RemovedMemberError } from '../errors.ts'
import { Membership } from '../members/membership.ts'
import { OwnEventsWatch, type RefusingPeer } from '../members/ownEvents.ts'
import { housekeeper as createHousekeeper, type Housekeeper } from '../housekeeping/housekeeper.ts'
import { statSync } from 'node:fs'
import { createHttpApp, type SchemaInfo } from '../http/app.ts'
import type { StreamDeps } from '../http/stream.ts'
import type { ConsoleDeps } from '../http/console/app.ts'
import { SeriesWindow } from '../http/console/series.ts'
import { ConsoleSessions } from '../http/console/sessions.ts'
import { dataPaths } from '../datadir/layout.ts'
import { requestReplay } from '../plugins/replay.ts'
import { createLogger, type Log } from '../log/logger.ts'
import { trace } from '../log/trace.ts'
import { Metrics } from '../metrics/metrics.ts'
import { HybridClock } from '../model/hlc.ts'
import { tightenModes } from '../datadir/modes.ts'
import type { PublishResult } from '../model/publishRequest.ts'
import { BlockExchange } from '../p2p/blockExchange.ts'
import { BlockFetcher } from '../p2p/blockFetcher.ts'
import { ForkCheck } from '../sync/forkCheck.ts'
import { HeadGossip, headsTopic } from '../p2p/gossip.ts'
import { HeadExchange } from '../p2p/headExchange.ts'
import { claimOf, HeadLimiter } from '../p2p/headLimiter.ts'
import { Dialer } from '../p2p/dialer.ts'
import type { CairnIpfs } from '../p2p/ipfs.ts'
import { PublishFence } from '../publish/fence.ts'
import type { BoundedMessageCache } from '../p2p/messageCache.ts'
import { pluginHost, type PluginHost } from '../plugins/host.ts'
import { loadPlugins } from '../plugins/load.ts'
import type { Plugin } from '../plugins/types.ts'
import { outbox as createOutbox, type Outbox } from '../publish/outbox.ts'
import { serve, type HttpServer } from '../runtime/serve.ts'
import { MEMORY_CHECK_MS, MemoryTarget, memoryLimit, memoryLimitWarnings, processMemoryProbe } from '../runtime/memoryTarget.ts'
import type { SqliteBlockstore } from '../store/blockstore.ts'
import type { Store } from '../store/store.ts'
import { syncer as createSyncer, type Syncer } from '../sync/syncer.ts'
import { COLLECT_EVERY_BLOCKS } from '../sync/fetch.ts'
import { HeadRelays } from '../sync/headRelays.ts'
import type { Uptime } from '../housekeeping/clock.ts'
import { busDirectory, busRoot } from '../unixfs/busRoot.ts'
import { diskFull, diskSpace, isDiskFullError } from '../datadir/problems.ts'
import { BUILD, VERSION } from '../version.ts'
import type { Components } from './components.ts'
import { CairnEventBus, type Divergence, waitFor } from './events.ts'
import { openDataDir, type OpenedDataDir } from './open.ts'
import { progressRenderer } from './progress.ts'
import { logUnhandledRejections, RejectionLog } from './rejections.ts'
import { type ClockStatus, divergenceText, ownEventsRefusedText, refreshMetrics, stampsAheadText, type StatusDocument, statusDocument, storedStatus, type StoredStatus } from './status.ts'

/** The console's charts take a reading this often. */
const CONSOLE_SAMPLE_MS = 2000

/** Options that the CLI, tests and embedders set. */
export interface NodeExtras {
  log?: Log
  /** plugins compiled into the binary (the CLI passes the built-in ones); --plugins adds more from files */
  plugins?: readonly Plugin[]
  /** writes to the operator's terminal: catch-up progress is then a bar there instead of log lines */
  terminal?: (text: string) => void
  /** this node's wall clock (tests give one that is off) */
  now?: () => number
  /** the machine's uptime that housekeeping's guarded clock moves by (tests give one past a boot's first minutes) */
  uptime?: () => Uptime
}

/** Everything a started node runs; present exactly while the node is started (or starting). */
interface Running {
  opened: OpenedDataDir
  components: Components
  ipfs: CairnIpfs
  plugins: PluginHost
  outbox: Outbox
  syncer: Syncer
  /** looks into own heads that peers hand this node for another copy's files at its seqs */
  forkCheck: ForkCheck
  housekeeper: Housekeeper
  snapshots: Snapshots
  fetcher: BlockFetcher
  blockExchange: BlockExchange
  headExchange: HeadExchange
  limiter: HeadLimiter
  gossip: HeadGossip
  dialer: Dialer
  rejections: RejectionLog
  members: Membership
  /** which members' heads show they do not take this node's events */
  ownEvents: OwnEventsWatch
  /** the browser console's login links and sessions, and its charts' readings */
  console: { sessions: ConsoleSessions; series: SeriesWindow }
  http?: HttpServer
  /** holds publishes after the start until a peer pushed its heads */
  fence: PublishFence
  /** gossipsub's message cache, for its size in /metrics */
  messageCache: BoundedMessageCache
  timers: Array<ReturnType<typeof setInterval>>
  stopListening: Array<() => void>
  startedAt: number
}

/**
 * A cairn node: composes the data directory, the databases, the embedded Helia node, the outbox, sync,
 * plugins, housekeeping and the loopback endpoint. One lifecycle: `start()` then `stop()`, each safe to
 * call twice. What happens inside is dispatched on `events` (see CairnEvents).
 */
export class CairnNode {
  readonly config: NodeConfig
  readonly log: Log
  readonly metrics = new Metrics()
  /** the typed events every service of this node dispatches */
  readonly events: CairnEventBus
  status: 'stopped' | 'starting' | 'started' | 'stopping' = 'stopped'
  /** while the node stops: the part it is stopping now */
  private stopStep?: string
  private readonly extras: NodeExtras
  private readonly clock: HybridClock
  private running?: Running
  /** while the node starts: that start, which a stop waits for */
  private starting?: Promise<void>
  /** the highest head of this node's own producer a peer held ahead of its outbox, since it started */
  private diverged?: Divergence

  constructor(config: NodeConfig, extras: NodeExtras = {}) {
    this.config = config
    this.extras = extras
    this.clock = new HybridClock(extras.now, { maxSkewMs: config.maxClockSkew })
    this.log = extras.log ?? createLogger({ level: config.logLevel, format: config.logFormat })
    this.events = new CairnEventBus((err, type) => {
      this.log.error(`a listener of ${type} failed: ${err.stack ?? err.message}`)
    })
  }

  /** While the node stops, what it waits on: the part it is stopping, and where that part's work is. */
  get stoppingStep(): string | undefined {
    const phase = this.stopStep === 'housekeeping' ? this.running?.housekeeper.phase : undefined
    return phase == null ? this.stopStep : `${this.stopStep} (a run, in its ${phase} phase)`
  }

  private get run(): Running {
    if (this.running == null) throw new NotStartedError(`The node is ${this.status}`)
    return this.running
  }

  get peerId(): PeerId {
    return this.run.opened.peerId
  }
  get network(): string {
    return this.run.opened.network
  }
  get store(): Store {
    return this.run.opened.store
  }
  get blocks(): SqliteBlockstore {
    return this.run.opened.blocks
  }
  get ipfs(): CairnIpfs {
    return this.run.ipfs
  }
  get plugins(): PluginHost {
    return this.run.plugins
  }
  /** who may write: the owners' changes, the members setting, or everyone */
  get members(): Membership {
    return this.run.members
  }
  get blockExchange(): BlockExchange {
    return this.run.blockExchange
  }
  /** the HTTP endpoint's address, once listening */
  get http(): HttpServer | undefined {
    return this.running?.http
  }

  /**
   * Starts the node.
   *
   * @throws UsageError for a non-loopback --http without --force-http; ConfigError, DataDirError, DataDirBusyError, AddressInUseError or ListenError (the HTTP endpoint or a --listen address), PluginLoadError
   */
  async start(): Promise<void> {
    // A start asked during a start waits for that one (and fails as it fails).
    if (this.status === 'starting') return await this.starting
    if (this.status === 'started') return
    this.status = 'starting'
    this.starting = this.startOnce()
    try {
      await this.starting
    } finally {
      this.starting = undefined
    }
  }

  private async startOnce(): Promise<void> {
    const cfg = this.config
    const opened = await openDataDir(cfg, { onMigrationWait: (line) => this.log.warn(line, { reason: 'migration_wait' }) }).catch((err) => {
      this.status = 'stopped'
      throw err
    })
    const self = opened.peerId.toString()
    if (opened.recovered.rebuilt > 0) {
      this.log.warn(
        `rebuilt ${opened.recovered.rebuilt} block(s) of the own outbox tree that the commits after seq ${opened.recovered.after} had written (lost by a power cut or a crash of the machine) from cairn.db`,
        {
          reason: 'outbox_blocks_rebuilt'
        }
      )
    }
    const lastOwn = opened.store.producers.get(self)?.head_hlc
    const ownAhead = lastOwn == null ? 0 : this.clock.resume(lastOwn)
    if (ownAhead > this.clock.maxSkewMs) {
      this.log.warn(stampsAheadText(ownAhead, lastOwn ?? undefined), { reason: 'own_clock_behind', ahead_ms: ownAhead })
    }
    const components: Components = { self, store: opened.store, blocks: opened.blocks, log: this.log, metrics: this.metrics, clock: this.clock, events: this.events }
    const { access } = opened
    let membership: Membership | undefined
    const rejections = new RejectionLog({ isKnown: (p) => membership?.isKnown(p) ?? opened.store.producers.has(p) }, components)
    const stopListening = [() => rejections.stop(), logUnhandledRejections(this.log)]
    this.diverged = undefined
    stopListening.push(
      this.events.listen('self:diverged', (d) => {
        if (this.diverged != null && d.seq <= this.diverged.seq) return
        this.diverged = d
        this.log.error(`${divergenceText(d)}; publishing is refused`, {
          reason: 'producer_diverged',
          seq: d.seq,
          outbox_seq: d.outbox_seq,
          root: d.root,
          ...(d.fork == null ? {} : { file: d.fork.file, own_file: d.fork.own })
        })
      })
    )
    let ipfs: CairnIpfs | undefined
    let startedPlugins: PluginHost | undefined
    try {
      const plugins = pluginHost({
        plugins: await loadPlugins(this.extras.plugins ?? [], cfg.plugins),
        publish: async (r) => {
          // An effect's publish while publishes are held would stall the plugin round behind the fence: it is
          // refused instead, and the effect tries again a second later without an attempt counted.
          if (this.running?.fence.closed === true) throw new NotStartedError('Cannot publish yet: publishes are held until a peer pushes the heads it knows (--publish-fence)')
          return await this.publish(r)
        },
        self,
        allowUnknownTypes: cfg.allowUnknownTypes
      })(components)
      startedPlugins = plugins
      await plugins.start()
      // Loaded here, not at the top: the transport's WebAssembly (noise, sha256, libsodium) takes ~70 ms to
      // instantiate, which every CLI verb paid though only a starting node uses it.
      const { createIpfs, gossipMessageCache, listenError } = await import('../p2p/ipfs.ts')
      const messageCache = gossipMessageCache()
      const listenFailures = new Map<string, Error>()
      ipfs = await createIpfs({
        messageCache,
        privateKey: opened.privateKey,
        swarmKey: opened.swarmKey,
        listen: cfg.listen,
        blockstore: opened.blocks,
        datastorePath: opened.datastorePath,
        network: opened.network,
        headsTopic: headsTopic(opened.network),
        onDatastoreError: (err) => {
          this.log.warn(`cannot write a peer record to the datastore: ${err.message}`, { reason: 'datastore_write_failed' })
        },
        onGossipReceived: (topic, what) => {
          if (what === 'received') components.metrics.gossipReceived.inc({ topic })
          else components.metrics.gossipDuplicates.inc({ topic })
        },
        onListenFailure: (addr, err) => listenFailures.set(addr, err)
      })
      // Helia builds libp2p when it starts; nothing listens on it until the services below start.
      await ipfs.start().catch((err: unknown) => {
        throw listenError(err, cfg.listen, listenFailures)
      })
      const libp2p = ipfs.libp2p
      const fence = await this.publishFence(libp2p)
      const blockExchange = new BlockExchange({ libp2p, get: (cid) => opened.blocks.getSync(cid), log: this.log })
      const fetcher = new BlockFetcher({ ipfs, exchange: blockExchange, fetchTimeout: cfg.fetchTimeout }, components)
      const outbox = createOutbox({
        privateKey: opened.privateKey,
        maxBatch: cfg.maxBatch,
        maxEventSize: cfg.maxEventSize,
        maxDepth: cfg.maxDepth,
        validate: (type, version, payload) => plugins.validatePublish(type, version, payload),
        acks: () => opened.store.acks(),
        refusal: () => this.publishRefusal(),
        held: () => fence.wait()
      })(components)
      const members = new Membership(
        {
          setting: access.members,
          publish: async (rs) => await outbox.publishMany(rs, undefined, { reserved: true }),
          connected: () => new Set(libp2p.getPeers().map(String)),
          onChange: () => {
            const r = this.running
            if (r == null) return
            // Walks that membership stopped (a re-admitted member) or capped can go on now, and peers get
            // every head again at once: those that refused a head while it was not a member's take it now.
            for (const p of opened.store.producers.behind(self)) r.syncer.schedule(p)
            r.headExchange.pushAll().catch((err: Error) => {
              this.log.warn(`pushing the heads after a membership change failed: ${err.message}`)
            })
          }
        },
        components
      )
      membership = members
      members.start()
      stopListening.push(() => {
        members.stop()
      })
      const ownEvents = new OwnEventsWatch({
        self,
        afterMs: Math.max(cfg.lagAlert, 3 * cfg.announceInterval),
        lastSeq: () => opened.store.outbox.lastSeq(),
        counts: (p) => members.isMember(p) === true && members.removedAt(p) == null,
        known: (p) => members.isKnown(p) === true
      })
      stopListening.push(
        this.events.listen('head:accepted', (head) => {
          const seen = ownEvents.observe(head.producer, head.acks)
          if (seen == null || this.knowsItIsRefused(members, self)) return
          const { peer_id, after_seq, since } = seen.peer
          if (seen.change === 'refused') this.log.error(ownEventsRefusedText([seen.peer], self), { reason: 'own_events_refused', peer: peer_id, after_seq, since })
          else this.log.info(`${peer_id} takes this node's events after seq ${after_seq} again`, { reason: 'own_events_taken', peer: peer_id, after_seq })
        })
      )
      const forkCheck = new ForkCheck({ getBlock: async (cid, signal) => await fetcher.get(cid, { signal }), timeoutMs: cfg.fetchTimeout }, components)
      const syncer = createSyncer({
        getBlock: async (cid, options) => await fetcher.get(cid, options),
        getBlocks: async (producer, cids, options) => await fetcher.getMany(producer, cids, options),
        blockBatch: () => fetcher.batch(),
        limits: { maxEventSize: cfg.maxEventSize, maxDepth: cfg.maxDepth, maxFilesPerWalk: cfg.maxFilesPerWalk },
        fetchTimeout: cfg.fetchTimeout,
        collectGarbage: collectOnDemand(),
        keepBlocks: (blocks) => {
          fetcher.keepHinted(blocks)
        },
        offerBlocks: (blocks) => {
          fetcher.offerHinted(blocks)
        },
        ownHead: (head, blocks) => {
          forkCheck.offer(head, blocks)
        },
        isMember: (p) => members.isMember(p),
        removedAt: (p) => members.removedAt(p),
        waitFor: (p, acks, processed) => members.waitFor(p, acks, processed),
        maxProducers: cfg.maxProducers,
        checkEvent: (e) => {
          const refused = members.checkEvent(e)
          if (refused != null) return refused
          const allowed = access.policy.get(e.type)
          if (allowed != null && !allowed.has(e.producer)) return { reason: 'policy', detail: `${e.producer} may not produce ${e.type} (see the policy setting)` }
          return undefined
        }
      })(components)
      const housekeeper = createHousekeeper({
        outbox,
        retention: cfg.retention,
        retentionMax: cfg.retentionMax,
        eventsRetention: cfg.eventsRetention,
        changeAuthors: () => members.changeAuthors(),
        members: () => members.current(),
        walking: () => syncer.walkingRoots(),
        flushWalks: () => {
          fetcher.flushWalks()
        },
        processed: () => opened.store.acks()[self] ?? 0,
        maxClockSkew: cfg.maxClockSkew,
        now: this.extras.now,
        uptime: this.extras.uptime
      })(components)
      const snapshots = new Snapshots(components, {
        plugins: plugins.plugins,
        privateKey: opened.privateKey,
        put: async (plugin, bytes, vector) => await outbox.putSnapshot(plugin, bytes, vector),
        getBlock: async (cid, options) => await fetcher.get(cid, options),
        fetchTimeout: cfg.fetchTimeout,
        trusted: () => trustedForSnapshots(cfg.snapshotFrom, members),
        loaded: () => {
          plugins.notify()
        }
      })
      const limiter = new HeadLimiter({
        rate: cfg.headsPerSecond,
        accept: async (bytes, peer) => await syncer.acceptHead(bytes, peer),
        onCoalesced: () => {
          this.metrics.headsReceived.inc({ result: 'coalesced' })
        },
        onDropped: (peer, detail) => {
          this.events.safeDispatchEvent('peer:rejected', { detail: { reason: 'rate_limited', detail, peer } })
        }
      })
      const relays = new HeadRelays()
      // A hint of this node's own that no peer heard (the gossip mesh forms after a start, and a publish held
      // by the fence comes right then) goes by the head exchange at once instead of at the next re-announce:
      // at most once a second, the last of a second's going at its end (a later head covers the earlier).
      let unheardAt = 0
      let unheardTimer: ReturnType<typeof setTimeout> | undefined
      const pushUnheard = (): void => {
        unheardAt = Date.now()
        headExchange.pushAll({ changed: true }).catch((err: Error) => {
          this.log.debug(`pushing an unheard head failed: ${err.message}`)
        })
      }
      stopListening.push(() => clearTimeout(unheardTimer))
      const gossip = new HeadGossip(
        {
          ipfs,
          network: opened.network,
          limiter,
          onUnheard: () => {
            if (unheardTimer != null) return
            const wait = unheardAt + 1000 - Date.now()
            if (wait <= 0) return pushUnheard()
            unheardTimer = setTimeout(() => {
              unheardTimer = undefined
              pushUnheard()
            }, wait)
          },
          publishHints: cfg.gossipHints,
          hintsPerSecond: cfg.hintsPerSecond,
          screen: (message) => {
            const { head, blocks } = message
            // A head stamped too far ahead is held wherever it arrives: relaying it would only make every node refuse it.
            const ahead = this.clock.tooFarAhead(head.hlc)
            if (ahead != null) return { relay: false, reason: 'clock_skew', detail: `${head.producer} stamped head ${head.seq} ${Math.round(ahead / 1000)} s ahead of this node's clock` }
            const judged = syncer.judge(message)
            if ((judged.verdict === 'new' || judged.verdict === 'late') && relays.first(head.producer, head.seq, head.hlc)) return { relay: true }
            // A head relayed before is one more copy with other blocks: only a waiting walk may use them.
            if (judged.verdict !== 'refused' && blocks.length > 0) fetcher.offerHinted(blocks)
            return judged.verdict === 'refused' ? { relay: false, reason: judged.reason, detail: judged.detail } : { relay: false }
          },
          onHint: async (bytes, peer) => await syncer.acceptHead(bytes, peer)
        },
        components
      )
      /** peers whose head of this node was judged at once while publishes were held (one each) */
      const ownHeadFrom = new Set<string>()
      const headExchange = new HeadExchange({
        libp2p,
        heads: () => syncer.knownHeads(),
        headOf: (producer) => opened.store.producers.get(producer)?.head_message ?? undefined,
        onHead: async (bytes, from) => {
          const peer = from.toString()
          // While publishes are held, this node's own head is judged before the push is over, never deferred
          // by the limiter: the held publishes go on when it is (PublishFence). Once per peer, so that replays
          // of it cost one check each.
          if (fence.closed && !ownHeadFrom.has(peer) && claimOf(bytes)?.producer === self) {
            ownHeadFrom.add(peer)
            await syncer.acceptHead(bytes, peer)
            return
          }
          await limiter.offer(bytes, peer)
        },
        onRejected: (peer, reason, detail) => {
          this.metrics.headsReceived.inc({ result: 'rejected' })
          this.events.safeDispatchEvent('peer:rejected', { detail: { reason, detail, peer } })
        },
        onPushed: (peer) => {
          // Only a member's push tells what the network holds of this node: anyone with the swarm key can push.
          if (!fence.closed || members.isMember(peer) === false) return
          fence.open()
          ownHeadFrom.clear()
          this.log.info(`publishing: ${peer} pushed the heads it knows`, { reason: 'publish_fence_opened', peer })
        },
        log: this.log
      })
      const dialer = new Dialer({ ipfs, bootstrap: cfg.bootstrap }, components)
      const running: Running = {
        fence,
        messageCache,
        opened,
        components,
        ipfs,
        plugins,
        outbox,
        syncer,
        forkCheck,
        housekeeper,
        snapshots,
        fetcher,
        blockExchange,
        headExchange,
        limiter,
        gossip,
        dialer,
        rejections,
        members,
        ownEvents,
        console: { sessions: new ConsoleSessions(), series: new SeriesWindow() },
        timers: [],
        stopListening,
        startedAt: 0
      }
      this.running = running
      this.wire(running)

      await headExchange.start()
      await blockExchange.start()
      gossip.start()
      outbox.start()
      housekeeper.start()
      running.http = this.serveHttp(running)
      syncer.start()
      dialer.start()
      running.timers.push(
        setInterval(() => {
          void this.reannounce()
        }, cfg.announceInterval)
      )
      running.timers.push(
        setInterval(() => {
          void this.housekeeping()
        }, cfg.housekeepingInterval)
      )
      if (cfg.snapshotInterval != null) {
        running.timers.push(
          setInterval(() => {
            void this.writeSnapshots().catch((err: Error) => {
              this.log.warn(`scheduled snapshot not written: ${err.message}`, { reason: 'snapshot_failed' })
            })
          }, cfg.snapshotInterval)
        )
      }
      running.timers.push(
        setInterval(() => {
          this.consoleReading(running)
        }, CONSOLE_SAMPLE_MS)
      )
      if (cfg.memoryTarget != null) {
        const probe = processMemoryProbe()
        if (probe == null) {
          this.log.warn('memory-target is ignored: this runtime cannot run a collection on demand (Deno needs --v8-flags=--expose-gc)', { reason: 'memory_target_unsupported' })
        } else {
          const target = new MemoryTarget(cfg.memoryTarget, cfg.memoryTargetInterval, probe)
          running.timers.push(
            setInterval(() => {
              const ms = target.check()
              if (ms === undefined) return
              this.metrics.memoryCollections.inc()
              this.metrics.memoryCollectSeconds.inc(ms / 1000)
            }, MEMORY_CHECK_MS)
          )
        }
      }
      // Picks up what another process asked of the plugins in the database (cairn replay, cairn plugins
      // rebuild): a round runs only when some other connection committed. Retries schedule their own rounds.
      let dataVersion = opened.store.dataVersion()
      running.timers.push(
        setInterval(() => {
          const now = opened.store.dataVersion()
          if (now === dataVersion) return
          dataVersion = now
          plugins.changedElsewhere()
        }, 1000)
      )
      running.startedAt = Date.now()
      const http = `${cfg.http.host.includes(':') ? `[${cfg.http.host}]` : cfg.http.host}:${running.http.port}`
      writeRunInfo(cfg.data, {
        peer_id: self,
        pid: process.pid,
        version: VERSION,
        build: BUILD,
        addrs: libp2p.getMultiaddrs().map(String),
        http,
        started_at: new Date(running.startedAt).toISOString(),
        plugins: cfg.plugins.map((d) => resolve(d))
      })
      this.status = 'started'
      const limit = memoryLimit()
      // Before 'node started': whoever reads the log up to that line (a supervisor, a test) has the warnings too.
      for (const w of memoryLimitWarnings(limit)) this.log.warn(w.message, { reason: w.reason, memory_limit_bytes: limit?.bytes })
      this.log.info('node started', {
        peer_id: self,
        addrs: libp2p.getMultiaddrs().map(String),
        http: `${cfg.http.host}:${running.http.port}`,
        network: opened.network,
        ...(limit == null ? {} : { memory_limit_bytes: limit.bytes })
      })
    } catch (err) {
      if (this.running == null) {
        // Failed before every service existed: stop what did start, in reverse order.
        await startedPlugins?.stop().catch((e: Error) => {
          this.log.warn(`stopping the plugins after a failed start: ${e.message}`)
        })
        await ipfs?.stop().catch((e: Error) => {
          this.log.warn(`stopping libp2p after a failed start: ${e.message}`)
        })
        for (const stop of stopListening) stop()
        clearRunInfo(cfg.data)
        opened.close()
      } else {
        await this.teardown()
      }
      this.status = 'stopped'
      throw err
    }
  }

  /** Stops everything the node started: timers, HTTP, services, libp2p, databases, the lock. */
  async stop(): Promise<void> {
    // A stop asked during the start waits for it: the start holds the data directory and builds what the stop tears down.
    await this.starting?.catch(() => {})
    if (this.status === 'stopped' || this.status === 'stopping') return
    this.status = 'stopping'
    await this.teardown()
    this.status = 'stopped'
    this.log.info('node stopped')
  }

  /** Connects the services' events: what a commit, an ingest, a prune and a catch-up lead to. */
  private wire(r: Running): void {
    const { events } = this
    r.stopListening.push(
      events.listen('outbox:committed', ({ head, events: committed, blocks }) => {
        r.fetcher.stored(blocks.map((b) => b.cid))
        r.gossip.publish(head, blocks, committed.length)
        trace('commit.announced', committed.at(-1)?.seq)
        events.safeDispatchEvent('events:ingested', { detail: committed })
      }),
      events.listen('events:ingested', (ingested) => {
        const now = Date.now()
        for (const e of ingested) {
          this.metrics.ingested.inc({ type: e.type })
          this.metrics.propagation.observe(Math.max(0, now - Date.parse(e.occurred_at)) / 1000)
        }
        trace('events.ingested', ingested.at(-1)?.seq)
        r.plugins.notify()
      }),
      events.listen('outbox:pruned', ({ head }) => {
        r.gossip.publish(head)
      }),
      events.listen('sync:progress', progressRenderer(this.log, this.extras.terminal)),
      // Once a catch-up settles, plugins whose state misses pruned history look for a trusted snapshot.
      events.listen('sync:idle', () => {
        void r.snapshots.bootstrap()
      }),
      // A rebuild forgets the snapshot a plugin's state came from: it looks for one again at once, not at
      // the next walk (which a quiet network may not have for a long time).
      events.listen('plugin:rebuilt', () => {
        void r.snapshots.bootstrap()
      })
    )
  }

  private httpApp(r: Running): ReturnType<typeof createHttpApp> {
    return createHttpApp({
      token: r.opened.token,
      maxBodySize: this.config.maxBodySize,
      maxBatch: this.config.maxBatch,
      maxEventSize: this.config.maxEventSize,
      maxDepth: this.config.maxDepth,
      idleTimeoutMs: this.config.httpIdleTimeout,
      log: this.log,
      ready: () => this.readiness(),
      status: async () => await this.statusJson(),
      publish: async (body, key) => await this.publish(body, key),
      publishMany: async (bodies, key) => await r.outbox.publishMany(bodies, key),
      schemas: () => r.plugins.listPlugins().flatMap((p) => Object.entries(p.types).map(([type, versions]) => this.schemaInfo(r, type, p.name, versions))),
      schema: (type, version) => {
        const p = r.plugins.listPlugins().find((p) => p.types[type] != null)
        if (p == null) throw new NotFoundError(`No schema for ${type}: no loaded plugin declares it (GET /v1/schemas lists the types)`)
        const versions = p.types[type]
        if (version != null && !versions.includes(version)) throw new NotFoundError(`No schema for ${type} v${version}: ${p.name} declares versions ${versions.join(', ')}`)
        return this.schemaInfo(r, type, p.name, versions, version)
      },
      snapshot: async (plugin) => await r.snapshots.write(plugin),
      metrics: () => {
        refreshMetrics(this.metrics, this.storedStatus(r), r.ipfs.libp2p.getPeers().length, this.config.lagAlert, this.clockStatus(), this.refusedBy(r).length)
        this.metrics.gossipCacheBytes.set(r.messageCache.bytes)
        return this.metrics
      },
      stream: this.streamDeps(r),
      bound: () => ({ port: r.http?.port, host: this.config.forceHttp ? this.config.http.host : undefined }),
      console: this.consoleDeps(r),
      members: {
        list: () => r.members.document(),
        add: async (body) => await r.members.add(body),
        remove: async (peer) => await r.members.remove(peer)
      }
    })
  }

  /** What the browser console reads and does: the status, the charts, the tables, replay. */
  private consoleDeps(r: Running): ConsoleDeps {
    const { store, blocks } = r.opened
    const paths = dataPaths(this.config.data)
    const onDisk = (file: string): number => [file, `${file}-wal`].reduce((n, f) => n + (statSync(f, { throwIfNoEntry: false })?.size ?? 0), 0)
    return {
      token: r.opened.token,
      sessions: r.console.sessions,
      log: this.log,
      status: async () => await this.statusJson(),
      series: () => r.console.series.series(),
      events: store.events,
      stream: this.streamDeps(r),
      plugins: (rows) => ({
        list: r.plugins.listPlugins().map((p) => ({ ...p, backlog: store.events.countAfter(store.pluginState.cursor(p.name)) })),
        schema: (type, version) => r.plugins.jsonSchema(type, version),
        dead: store.pluginState.deadLetters(rows),
        held: store.pluginState.held(rows)
      }),
      replay: (eventId, producer) => {
        const queued = requestReplay(store, { eventId, producer })
        r.plugins.notify()
        return queued
      },
      // The static setting: the Members page shows it where the endpoint has no /v1/members.
      members: () => {
        const setting = r.opened.access.members
        const self = r.opened.peerId.toString()
        const peers = new Set(r.ipfs.libp2p.getPeers().map(String))
        return {
          source: setting == null ? 'open' : 'setting',
          self_is_owner: false,
          members: [...(setting ?? new Map<string, string | undefined>())].map(([peer, name]) => ({
            peer_id: peer,
            name: name ?? null,
            connected: peer === self ? undefined : peers.has(peer),
            self: peer === self
          }))
        }
      },
      storage: () => ({ blocks: blocks.count(), blocks_bytes: onDisk(paths.blocks), database_bytes: onDisk(paths.database) }),
      bound: () => ({ port: r.http?.port, host: this.config.forceHttp ? this.config.http.host : undefined })
    }
  }

  /** Records one reading for the console's charts: what was published, ingested and applied, and the lag. */
  private consoleReading(r: Running): void {
    const { store } = r.opened
    r.console.series.add(Date.now(), {
      published: store.outbox.counts().lastSeq,
      ingested: store.events.maxCursor(),
      applied: r.plugins.watermark(),
      lag: store.producers.all().map((p) => ({ producer: p.producer, lag_events: Math.max(0, p.head_seq - p.processed_seq) }))
    })
  }

  /** What an event stream (`/v1/stream`, the console's live tail) reads. */
  private streamDeps(r: Running): StreamDeps {
    return {
      events: r.opened.store.events,
      heartbeatMs: this.heartbeatMs,
      watermark: () => r.plugins.watermark(),
      wait: async (signal, ms) =>
        await waitFor(this.events, 'plugins:progress', { signal: AbortSignal.any([signal, AbortSignal.timeout(ms)]) }).then(
          () => true,
          () => false
        )
    }
  }

  /**
   * Serves the loopback endpoint. With port 0 it listens on the port it had last time (kept in meta), so
   * that clients find it again after a restart; only when that port is taken does it take another free one.
   */
  private serveHttp(r: Running): HttpServer {
    const cfg = this.config
    const limits = { idleTimeoutMs: cfg.httpIdleTimeout, maxConnections: cfg.httpMaxConnections }
    const { meta } = r.opened.store
    const fetch = this.httpApp(r).fetch
    const last = Number(meta.get('http_port') ?? 0)
    let server: HttpServer | undefined
    if (cfg.http.port === 0 && last > 0) {
      try {
        server = serve(fetch, cfg.http.host, last, limits)
      } catch (err) {
        const name = (err as Error).name
        // An address the system refuses is refused again below, named as the operator gave it (port 0).
        if (name !== 'AddressInUseError' && name !== 'ListenError') throw err
        if (name === 'AddressInUseError') {
          this.log.warn(`the HTTP port of the last run, ${last}, is taken: listening on another one, and clients must read it from node.json`, { reason: 'http_port_taken' })
        }
      }
    }
    server ??= serve(fetch, cfg.http.host, cfg.http.port, limits)
    if (cfg.http.port === 0) meta.put('http_port', String(server.port))
    return server
  }

  /** A stream's heartbeat comes well within the idle timeout, so that an open stream is never closed as idle. */
  private get heartbeatMs(): number {
    return Math.min(this.config.streamHeartbeat, Math.floor(this.config.httpIdleTimeout / 2))
  }

  /** @returns a type's payload schema at `version` (default: the newest), as GET /v1/schemas shows it */
  private schemaInfo(r: Running, type: string, plugin: string, versions: number[], version?: number): SchemaInfo {
    const newest = Math.max(...versions)
    return { type, plugin, version: version ?? newest, versions, schema: r.plugins.jsonSchema(type, version ?? newest) as Record<string, unknown> }
  }

  /** Stops what runs, in the reverse order of start; a part that fails to stop is logged and the rest still stops. */
  private async teardown(): Promise<void> {
    const r = this.running
    if (r == null) return
    const step = async (what: string, fn: () => unknown): Promise<void> => {
      this.stopStep = what
      try {
        await fn()
      } catch (err) {
        this.log.warn(`stopping ${what} failed: ${(err as Error).message}`)
      }
    }
    for (const t of r.timers) clearInterval(t)
    // Held publishes are refused: no peer pushed yet, so the node cannot tell whether their seqs are taken.
    r.fence.refuse(new NotStartedError('The node is stopping before a peer pushed the heads it knows: publish again once it runs'))
    r.snapshots.stop()
    r.dialer.stop()
    r.limiter.stop()
    await step('the HTTP endpoint', async () => await r.http?.stop())
    await step('the outbox', async () => {
      await r.outbox.stop()
    })
    await step('housekeeping', async () => {
      await r.housekeeper.stop()
    })
    await step('sync', async () => {
      await r.syncer.stop()
      await r.forkCheck.stop()
    })
    await step('the plugins', async () => {
      await r.plugins.stop()
    })
    await step('gossip', () => {
      r.gossip.stop()
    })
    await step('the head exchange', async () => {
      await r.headExchange.stop()
    })
    await step('the block exchange', async () => {
      await r.blockExchange.stop()
    })
    await step('libp2p', async () => {
      await r.ipfs.stop()
    })
    for (const stop of r.stopListening) stop()
    // libp2p's datastore writes files with the process's umask while it runs (inside a 0700 directory).
    await step('the file modes', () => {
      tightenModes(this.config.data)
    })
    // node.json goes before the lock: a node that takes the directory next writes its own.
    clearRunInfo(this.config.data)
    await step('the databases', () => {
      r.opened.close()
    })
    this.running = undefined
    this.stopStep = undefined
  }

  /**
   * Publishes an event from the local backend.
   *
   * @returns its event_id, seq and CID, once durable
   * @throws ValidationError, EventTooLargeError, CommitFailedError; NotStartedError when the node is not started
   */
  async publish(body: unknown, key?: string): Promise<PublishResult> {
    trace('publish.received')
    return await this.run.outbox.publish(body, { key })
  }

  /** Offers a signed head as a peer would: through that peer's rate limit when `from` names it. */
  async offerHead(bytes: Uint8Array, from?: string): Promise<void> {
    if (from == null) await this.run.syncer.acceptHead(bytes, 'unknown')
    else await this.run.limiter.offer(bytes, from)
  }

  /** Pushes every known head to every connected peer now. */
  async announceAll(): Promise<void> {
    await this.run.headExchange.pushAll()
  }

  /** Re-signs the own head if the acks moved, then pushes the heads that changed to every peer. */
  private async reannounce(): Promise<void> {
    const r = this.run
    try {
      const head = await r.outbox.refreshHead()
      if (head != null) r.gossip.publish(head)
      this.metrics.headsAnnounced.inc({ via: 'exchange' })
      await r.headExchange.pushAll({ changed: true })
    } catch (err) {
      this.log.warn(`re-announce failed: ${(err as Error).message}`)
    }
  }

  /**
   * Writes a signed snapshot of one plugin's tables (or of every plugin that takes part) into this node's outbox.
   *
   * @throws ValidationError for an unknown or opted-out plugin, or one whose state is not whole here
   */
  async writeSnapshots(plugin?: string): Promise<WrittenSnapshot[]> {
    return await this.run.snapshots.write(plugin)
  }

  /** Runs pruning and garbage collection once. */
  async housekeeping(): Promise<void> {
    await this.run.housekeeper.run()
  }

  private readiness(): { ready: boolean; reason?: string } {
    const r = this.running
    if (this.status !== 'started' || r == null) return { ready: false, reason: `node is ${this.status}` }
    if (r.ipfs.libp2p.status !== 'started') return { ready: false, reason: 'libp2p is not started' }
    const problem = r.opened.store.check()
    return problem == null ? { ready: true } : { ready: false, reason: `database: ${problem}` }
  }

  /** @returns what the database says, with the lost gaps that loaded snapshots cover taken out of the alarms */
  private storedStatus(r: Running): StoredStatus {
    return r.members.withMembership(storedStatus(r.opened.store, Date.now(), r.snapshots.coverage()))
  }

  /** @returns the status document of `/status` and `cairn status --json` */
  async statusJson(): Promise<StatusDocument> {
    const r = this.run
    const libp2p = r.ipfs.libp2p
    const bus = await this.statusBusRoot()
    return statusDocument(
      {
        ready: this.readiness(),
        storage: this.storageProblems(r, bus.unstored),
        lagAlert: this.config.lagAlert,
        busRoot: bus.cid.toString(),
        peerId: r.opened.peerId.toString(),
        network: r.opened.network,
        startedAt: r.startedAt,
        listen: libp2p.getMultiaddrs().map(String),
        peers: libp2p.getPeers().map(String),
        syncing: r.syncer.busy,
        rejections: r.rejections.list(),
        clock: this.clockStatus(),
        pluginStates: r.snapshots.states(),
        members: r.members.document(),
        loadedPlugins: r.plugins.listPlugins(),
        diverged: this.diverged,
        refusedBy: this.refusedBy(r)
      },
      this.storedStatus(r)
    )
  }

  /**
   * @returns the fence that holds publishes after this start: closed for --publish-fence when there is a
   * peer to hear from (a bootstrap peer, or one met before), open at once otherwise
   */
  private async publishFence(libp2p: CairnIpfs['libp2p']): Promise<PublishFence> {
    const ms = this.config.publishFence
    const known = this.config.bootstrap.length > 0 || (ms > 0 && (await libp2p.peerStore.all()).length > 0)
    const fence = new PublishFence(known ? ms : 0, () => {
      this.log.warn(
        `publishing: no peer pushed its heads within ${ms} ms of the start, so this node cannot tell whether it is behind its own published history (restored from an older backup: see docs/operations.md, "Backups")`,
        { reason: 'publish_fence_expired', publish_fence_ms: ms }
      )
    })
    if (fence.closed) this.log.info(`holding publishes until a peer pushes the heads it knows, at most ${ms} ms`, { reason: 'publish_fence', publish_fence_ms: ms })
    return fence
  }

  /**
   * @returns whether this node knows that the others refuse its events: it holds its own removal, or, under
   * owners' changes, is no member (status says so; the members' acknowledgements would only repeat it)
   */
  private knowsItIsRefused(members: Membership, self: string): boolean {
    return members.removedAt(self) != null || (members.source === 'changes' && members.isMember(self) !== true)
  }

  /** @returns the members whose heads show they do not take this node's events, unless it knows why already */
  private refusedBy(r: Running): RefusingPeer[] {
    return this.knowsItIsRefused(r.members, r.opened.peerId.toString()) ? [] : r.ownEvents.refusing()
  }

  /**
   * @returns the error a publish is refused with while this node must not publish: its history diverged
   * ('self:diverged'), or it holds an owner's removal of itself (every other node refuses its events after
   * the removal's last seq, and a publish would be answered 201 and reach none of them)
   */
  private publishRefusal(): Error | undefined {
    const d = this.diverged
    if (d != null) return new ProducerDivergedError(`Cannot publish: ${divergenceText(d)} (see docs/operations.md, "Backups")`)
    const r = this.running
    const self = r?.opened.peerId.toString()
    const removed = self == null ? undefined : r?.members.removedAt(self)
    if (removed == null) return undefined
    // The removal may be the first change of a demotion (a removal, then an add as a member, in one commit) that a
    // walk stored in two transactions (its chunk or pass ended between them): while it is the last event of its
    // owner walked here and that owner's head is further, the add may follow.
    const remover = r!.opened.store.producers.get(removed.removed_by)
    if (removed.removal_seq != null && remover != null && remover.processed_seq === removed.removal_seq && remover.head_seq > removed.removal_seq) return undefined
    return new RemovedMemberError(
      `Cannot publish: this node (${self}) was removed by ${removed.removed_by} at ${removed.removed_at}, and every other node refuses its events after seq ${removed.last_seq}; an owner adds it again (cairn members add ${self}) for it to publish (see docs/operations.md, "Members")`
    )
  }

  /** @returns this node's clock against others' */
  clockStatus(): ClockStatus {
    const { watch } = this.clock
    return {
      max_skew_ms: this.clock.maxSkewMs,
      network_offset_ms: watch.networkTime()?.offset_ms ?? null,
      publish_refused: watch.stampRefusal() ?? null,
      producers_ahead: watch.producersAhead(),
      stamps_ahead_ms: this.clock.stampsAhead(),
      unsure: watch.unsure() ?? null
    }
  }

  /**
   * Builds and stores the bus directory, so that any IPFS client can fetch the CID status reports (housekeeping
   * keeps the current one).
   *
   * @returns the CID of this node's bus directory
   */
  async busRoot(): Promise<CID> {
    return await busRoot(this.run.opened.store.producers.syncedRoots(), this.run.opened.blocks)
  }

  /** @returns the bus root for status, and the error that kept it from being stored (a full disk): status answers then too */
  private async statusBusRoot(): Promise<{ cid: CID; unstored?: Error }> {
    try {
      return { cid: await this.busRoot() }
    } catch (err) {
      return { cid: (await busDirectory(this.run.opened.store.producers.syncedRoots())).cid, unstored: err as Error }
    }
  }

  /**
   * @returns what this node cannot write, for status: the last commit failed (while none succeeded after it),
   * the bus root could not be stored, or the data directory's file system is (almost) full
   */
  private storageProblems(r: Running, busUnstored: Error | undefined): string[] {
    const dir = this.config.data
    const space = diskSpace(dir)
    const left = space == null ? '' : ` (${space.free} of ${space.total} bytes free on the file system of ${dir})`
    const fullNow = diskFull(dir, space)
    const failure = r.outbox.lastFailure
    const full = failure?.full === true || (busUnstored != null && isDiskFullError(busUnstored)) || fullNow
    const problems: string[] = []
    if (failure?.full === true && space != null && !fullNow) {
      // The file system has room again (or a quota, which its free space does not show, refuses this user).
      problems.push(
        `the last commit, at ${failure.at}, failed with "${failure.message}"; the file system of ${dir} has ${space.free} of ${space.total} bytes free now: the next publish commits unless a quota still refuses this user`
      )
    } else if (failure != null) {
      problems.push(
        `commits fail: the last one, at ${failure.at}, failed with "${failure.message}"${left}; publishes are answered 503 commit_failed until one succeeds${full ? ': free space there, or move the data directory to a larger file system' : ''}`
      )
    } else if (full) problems.push(`the disk is full${left}: commits will fail; free space there, or move the data directory to a larger file system`)
    if (busUnstored != null) problems.push(`the bus root could not be stored (${busUnstored.message}): IPFS clients cannot fetch the bus_root CID from this node`)
    return problems
  }
}

/** @returns sync's collection every COLLECT_EVERY_BLOCKS blocks its walks read, where the runtime can collect on demand */
function collectOnDemand(): { every: number; collect: () => void } | undefined {
  const probe = processMemoryProbe()
  return probe == null ? undefined : { every: COLLECT_EVERY_BLOCKS, collect: probe.collect }
}
