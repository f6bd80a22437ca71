import * as v from 'valibot'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { ConfigError } from '../errors.ts'
import { BoolSchema, durationSchema, HostPortSchema, intSchema, sizeSchema, StringListSchema, TIMER_MAX, type Setting } from './settings.ts'

/** The default data directory: `$CAIRN_DATA`, else `~/.cairn`. */
const DEFAULT_DATA_DIR = join(homedir(), '.cairn')
/** The default swarm (libp2p TCP) listen address. */
const DEFAULT_LISTEN = '/ip4/0.0.0.0/tcp/7401'
/** The default loopback HTTP endpoint. */
const DEFAULT_HTTP = '127.0.0.1:7400'

const TypeNameSchema = v.pipe(v.string(), v.regex(/^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)+$/, 'Expected a dotted lowercase event type'))

const str = (message: string) => v.pipe(v.string(message), v.minLength(1, message))

/** Every setting, by name. Verbs pick the ones they take. */
export const SETTINGS = {
  data: { name: 'data', kind: 'string', value: 'DIR', description: "the node's data directory (default ~/.cairn)", schema: str('Expected a directory path'), default: DEFAULT_DATA_DIR, inFile: false },
  listen: {
    name: 'listen',
    kind: 'string',
    multiple: true,
    value: 'MULTIADDR',
    description: `swarm address to listen on (default ${DEFAULT_LISTEN}; port 0 picks a free port)`,
    schema: StringListSchema,
    default: [DEFAULT_LISTEN]
  },
  bootstrap: {
    name: 'bootstrap',
    kind: 'string',
    multiple: true,
    value: 'MULTIADDR',
    description: 'a peer to connect to and keep connected, with /p2p/<peer id>',
    schema: StringListSchema,
    default: []
  },
  http: {
    name: 'http',
    kind: 'string',
    value: 'HOST:PORT',
    description: `the loopback health/publish endpoint (default ${DEFAULT_HTTP}; port 0 picks a free port)`,
    schema: HostPortSchema,
    default: DEFAULT_HTTP
  },
  'force-http': {
    name: 'force-http',
    kind: 'boolean',
    description: 'allow --http on a non-loopback address (anyone who can reach it can read status; /v1 still needs the token)',
    schema: BoolSchema,
    default: false
  },
  'allow-unknown-types': {
    name: 'allow-unknown-types',
    kind: 'boolean',
    description:
      'publish event types (and versions) no local plugin reads, for networks where other nodes handle them; config.json (or the environment, comma-separated) may list the types instead (["document.shared"]). Without it such a publish is refused',
    schema: v.union(
      [
        BoolSchema,
        v.array(TypeNameSchema),
        // CAIRN_ALLOW_UNKNOWN_TYPES=document.shared,document.unshared
        v.pipe(
          v.string(),
          v.transform((x) => x.split(',').map((t) => t.trim())),
          v.array(TypeNameSchema)
        )
      ],
      'Expected true, false or a list of event types'
    ),
    default: false
  },
  plugins: { name: 'plugins', kind: 'string', multiple: true, value: 'DIR', description: 'a directory of external plugin files (.js/.ts) to load', schema: StringListSchema, default: [] },
  'log-level': {
    name: 'log-level',
    kind: 'string',
    value: 'LEVEL',
    description: 'debug, info, warn or error (default info)',
    schema: v.picklist(['debug', 'info', 'warn', 'error'], 'Expected debug, info, warn or error'),
    default: 'info'
  },
  'log-format': {
    name: 'log-format',
    kind: 'string',
    value: 'FORMAT',
    description: 'pretty or json (default: pretty on a terminal, json otherwise)',
    schema: v.picklist(['pretty', 'json'], 'Expected pretty or json'),
    default: undefined
  },
  'announce-interval': {
    name: 'announce-interval',
    kind: 'string',
    value: 'DURATION',
    description: 'how often to push peers the heads that changed since their last push, unchanged ones about once a minute (default 5s, 100ms to 24d)',
    schema: durationSchema({ min: '100ms', max: TIMER_MAX }),
    default: '5s'
  },
  'gossip-hints': {
    name: 'gossip-hints',
    kind: 'string',
    value: 'BOOL',
    description: 'announce new heads over gossipsub at once (default true; false leaves only the head exchange with peers)',
    schema: BoolSchema,
    default: 'true'
  },
  'fetch-timeout': {
    name: 'fetch-timeout',
    kind: 'string',
    value: 'DURATION',
    description: 'how long to wait for one block from peers before trying again later (default 10s, 100ms to 6d: a batch of blocks waits four times it)',
    schema: durationSchema({ min: '100ms', max: '6d' }),
    default: '10s'
  },
  'max-event-size': {
    name: 'max-event-size',
    kind: 'string',
    value: 'SIZE',
    description: 'the largest event file accepted or published (default 256KiB, 1KiB to 3MiB: one block)',
    schema: sizeSchema({ min: '1KiB', max: '3MiB' }),
    default: '256KiB'
  },
  'max-body-size': {
    name: 'max-body-size',
    kind: 'string',
    value: 'SIZE',
    description: 'the largest HTTP request body (default 1MiB, at least 1KB)',
    schema: sizeSchema({ min: '1KB' }),
    default: '1MiB'
  },
  'max-depth': {
    name: 'max-depth',
    kind: 'string',
    value: 'N',
    description: 'the deepest JSON nesting accepted in an event (default 64, at least 2: an event file nests its payload one level down)',
    schema: intSchema({ min: 2 }),
    default: 64
  },
  'max-files-per-walk': {
    name: 'max-files-per-walk',
    kind: 'string',
    value: 'N',
    description:
      "bounds a walk of a producer's tree (default 20000, at least 1): one pass lists at most 5 times this many event files and reads at most 50 times this many directories; a larger backlog takes more passes. The files are fetched and stored in chunks of at most 2048 files and 8 MiB, or of this many files when it is lower",
    schema: intSchema({ min: 1 }),
    default: 20_000
  },
  'heads-per-second': {
    name: 'heads-per-second',
    kind: 'string',
    value: 'N',
    description:
      'heads checked per second from each peer for each producer, and from each peer of heads that prove no news (forged, replayed, of strangers); four times it from each peer in all; more wait for their turn, only the newest per producer (default 200, at least 1)',
    schema: intSchema({ min: 1 }),
    default: 200
  },
  'hints-per-second': {
    name: 'hints-per-second',
    kind: 'string',
    value: 'N',
    description:
      "the most hints of its own commits this node gossips per second (default 100, at least 1). A commit 40 ms (or 1/N s, when longer) or more after the last hint is hinted at once; one sooner waits until the commits waiting cover 4 events (then it goes 1/N s after the last hint) or that time has passed, and one hint covers them all and carries the blocks of the newest that fit a hint. Keep it under the peers' heads-per-second: heads over that rate reach them without their blocks",
    schema: intSchema({ min: 1 }),
    default: 100
  },
  'max-producers': {
    name: 'max-producers',
    kind: 'string',
    value: 'N',
    description:
      'without a members list, the most producers whose heads this node tracks; heads of further producers are refused (counted as too_many_producers) (default 1000, at least 2: this node counts as one)',
    schema: intSchema({ min: 2 }),
    default: 1000
  },
  members: {
    name: 'members',
    kind: 'string',
    value: 'FILE',
    description: 'a JSON file listing the peer ids whose heads are accepted ([{"peer_id", "name"?}] or ["12D3…"]); config.json may hold the list itself; default: every holder of the swarm key',
    schema: v.union([v.string(), v.array(v.unknown())]),
    default: undefined
  },
  policy: {
    name: 'policy',
    kind: 'string',
    value: 'FILE',
    description: 'a JSON file mapping event types to the peer ids allowed to produce them ({"permission.revoked": ["12D3…"]}); config.json may hold the object itself',
    schema: v.union([v.string(), v.record(v.string(), v.array(v.string()))]),
    default: undefined
  },
  'lag-alert': {
    name: 'lag-alert',
    kind: 'string',
    value: 'DURATION',
    description: "status reads degraded when a producer's lag is over this (default 500ms)",
    schema: durationSchema(),
    default: '500ms'
  },
  retention: {
    name: 'retention',
    kind: 'string',
    value: 'DURATION',
    description: 'prune own event files older than this once every member acknowledged them (default 48h; at most retention-max, which rises to it when not set)',
    schema: durationSchema(),
    default: '48h',
    atMost: {
      setting: 'retention-max',
      why: 'retention-max prunes own event files that old even when a member has not acknowledged them, so a longer retention would never wait for acknowledgements'
    }
  },
  'retention-max': {
    name: 'retention-max',
    kind: 'string',
    value: 'DURATION',
    description:
      "prune own event files older than this even if a member has not acknowledged them (default 7d, at least 1s; a retention not set falls to it when it is shorter); that age is measured by the machine's uptime within a boot (and members' heads), not shortened by a system clock set ahead past the boot's first 15 minutes (see Retention and the clock in docs/operations.md)",
    schema: durationSchema({ min: '1s' }),
    default: '7d'
  },
  'housekeeping-interval': {
    name: 'housekeeping-interval',
    kind: 'string',
    value: 'DURATION',
    description: 'how often pruning and garbage collection run (default 10m, 1s to 24d)',
    schema: durationSchema({ min: '1s', max: TIMER_MAX }),
    default: '10m'
  },
  'memory-target': {
    name: 'memory-target',
    kind: 'string',
    value: 'SIZE',
    description:
      "run a full garbage collection when the resident set is over this size, at most once per memory-target-interval (default: off, the engine paces its collections by the machine's RAM; at least 32MiB)",
    schema: sizeSchema({ min: '32MiB' }),
    default: undefined
  },
  'memory-target-interval': {
    name: 'memory-target-interval',
    kind: 'string',
    value: 'DURATION',
    description: 'the least time between two collections memory-target runs (default 5s, at least 1s; each costs tens to hundreds of ms of CPU)',
    schema: durationSchema({ min: '1s' }),
    default: '5s'
  },
  'events-retention': {
    name: 'events-retention',
    kind: 'string',
    value: 'DURATION',
    description:
      "delete rows of the events table older than this (default: keep forever); that age is measured by the machine's uptime within a boot (and members' heads), not shortened by a system clock set ahead past the boot's first 15 minutes (see Retention and the clock in docs/operations.md)",
    schema: durationSchema(),
    default: undefined
  },
  'snapshot-interval': {
    name: 'snapshot-interval',
    kind: 'string',
    value: 'DURATION',
    description: "write a signed snapshot of every plugin's tables into the outbox this often (default: off, else 1s to 24d; cairn snapshot writes one on demand)",
    schema: durationSchema({ min: '1s', max: TIMER_MAX }),
    default: undefined
  },
  'snapshot-from': {
    name: 'snapshot-from',
    kind: 'string',
    value: 'PEERS',
    description: "whose snapshots a plugin's state may be loaded from when history is missing: 'members' (the members list; nobody without one) or comma-separated peer ids (default members)",
    schema: v.pipe(
      v.string(),
      v.check((s) => s === 'members' || s.split(',').every((p) => /^(12D3Koo|Qm)[1-9A-HJ-NP-Za-km-z]{40,60}$/.test(p.trim())), "Expected 'members' or comma-separated peer ids")
    ),
    default: 'members'
  },
  'max-batch': {
    name: 'max-batch',
    kind: 'string',
    value: 'N',
    description: 'the most events one group commit writes, and one request publishes (default 5000, at least 1)',
    schema: intSchema({ min: 1 }),
    default: 5000
  },
  'http-idle-timeout': {
    name: 'http-idle-timeout',
    kind: 'string',
    value: 'DURATION',
    description: 'close an HTTP connection that sent or received nothing for this long (default 30s, 1s to 255s; event streams send a heartbeat every 15s, or more often when this is shorter)',
    schema: durationSchema({ min: '1s', max: '255s' }),
    default: '30s'
  },
  'stream-heartbeat': {
    name: 'stream-heartbeat',
    kind: 'string',
    value: 'DURATION',
    description: 'a quiet /v1/stream writes a comment line this often, so that no idle timer on the way closes it (default 15s, 100ms to 1h; at most half of http-idle-timeout is used)',
    schema: durationSchema({ min: '100ms', max: '1h' }),
    default: '15s'
  },
  'http-max-connections': {
    name: 'http-max-connections',
    kind: 'string',
    value: 'N',
    description: 'the most HTTP requests served at once, event streams included; more are answered 503 (default 256, at least 1)',
    schema: intSchema({ min: 1 }),
    default: 256
  },
  'publish-fence': {
    name: 'publish-fence',
    kind: 'string',
    value: 'DURATION',
    description:
      "after a start with peers to reach (bootstrap peers, or peers met before), hold publishes until one has pushed the heads it knows, at most this long: a node restored from an older backup then learns it is behind before it reuses a seq, and refuses (default 10s, at most 20s, under the typed client's 30s request timeout; 0s publishes at once)",
    schema: durationSchema({ max: '20s' }),
    default: '10s'
  },
  'max-clock-skew': {
    name: 'max-clock-skew',
    kind: 'string',
    value: 'DURATION',
    description:
      "how far ahead of this node's clock an event or head may be stamped (default 60s): later ones are held until the clock catches up, and this node refuses to publish while its own clock is further than this from the network's, as at least two other producers with recent heads agree (with fewer, a node cannot tell whose clock is off, and publishes) (at least 1s)",
    schema: durationSchema({ min: '1s' }),
    default: '60s'
  }
} satisfies Record<string, Setting>

/** The settings `run` takes, which config.json may hold. */
export const RUN_SETTINGS: Setting[] = [
  SETTINGS.data,
  SETTINGS.listen,
  SETTINGS.bootstrap,
  SETTINGS.http,
  SETTINGS['force-http'],
  SETTINGS.plugins,
  SETTINGS['allow-unknown-types'],
  SETTINGS['log-level'],
  SETTINGS['log-format'],
  SETTINGS['announce-interval'],
  SETTINGS['gossip-hints'],
  SETTINGS['fetch-timeout'],
  SETTINGS['max-event-size'],
  SETTINGS['max-body-size'],
  SETTINGS['max-batch'],
  SETTINGS['max-depth'],
  SETTINGS['max-files-per-walk'],
  SETTINGS['heads-per-second'],
  SETTINGS['hints-per-second'],
  SETTINGS['max-producers'],
  SETTINGS.members,
  SETTINGS.policy,
  SETTINGS['lag-alert'],
  SETTINGS.retention,
  SETTINGS['retention-max'],
  SETTINGS['housekeeping-interval'],
  SETTINGS['events-retention'],
  SETTINGS['memory-target'],
  SETTINGS['memory-target-interval'],
  SETTINGS['snapshot-interval'],
  SETTINGS['snapshot-from'],
  SETTINGS['http-idle-timeout'],
  SETTINGS['stream-heartbeat'],
  SETTINGS['http-max-connections'],
  SETTINGS['max-clock-skew'],
  SETTINGS['publish-fence']
]

type RunSettingName =
  | 'data'
  | 'listen'
  | 'bootstrap'
  | 'http'
  | 'force-http'
  | 'plugins'
  | 'allow-unknown-types'
  | 'log-level'
  | 'log-format'
  | 'announce-interval'
  | 'gossip-hints'
  | 'fetch-timeout'
  | 'max-event-size'
  | 'max-body-size'
  | 'max-batch'
  | 'max-depth'
  | 'max-files-per-walk'
  | 'heads-per-second'
  | 'hints-per-second'
  | 'max-producers'
  | 'members'
  | 'policy'
  | 'lag-alert'
  | 'retention'
  | 'retention-max'
  | 'housekeeping-interval'
  | 'events-retention'
  | 'memory-target'
  | 'memory-target-interval'
  | 'snapshot-interval'
  | 'snapshot-from'
  | 'http-idle-timeout'
  | 'stream-heartbeat'
  | 'http-max-connections'
  | 'max-clock-skew'
  | 'publish-fence'

/** `max-event-size` → `maxEventSize` */
type CamelCase<S extends string> = S extends `${infer H}-${infer T}` ? `${H}${Capitalize<CamelCase<T>>}` : S

/** Settings without a default are optional in a node's configuration. */
type Optional = 'log-format' | 'members' | 'policy' | 'events-retention' | 'memory-target' | 'snapshot-interval'

/**
 * The resolved settings of a running node, camelCase, each typed by its setting's schema (see SETTINGS):
 * what `resolveSettings(RUN_SETTINGS, …)` returns, renamed by `toNodeConfig`.
 */
export type NodeConfig = {
  [K in Exclude<RunSettingName, Optional> as CamelCase<K>]: v.InferOutput<(typeof SETTINGS)[K]['schema']>
} & {
  [K in Optional as CamelCase<K>]?: v.InferOutput<(typeof SETTINGS)[K]['schema']>
}

/** @returns the camelCase name of a setting */
function camelCase(name: string): string {
  return name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())
}

/**
 * Renames settings resolved with `resolveSettings(RUN_SETTINGS, …)` to a node's configuration.
 *
 * @throws ConfigError when a setting the node needs is missing (only settings without a default may be)
 */
export function toNodeConfig(values: Record<string, unknown>): NodeConfig {
  const out: Record<string, unknown> = {}
  for (const s of RUN_SETTINGS) {
    if (values[s.name] === undefined && s.default !== undefined) throw new ConfigError(`Missing setting ${s.name}: resolve the run settings first`)
    if (values[s.name] !== undefined) out[camelCase(s.name)] = values[s.name]
  }
  // Each value passed the schema of its setting in resolveSettings: that is the type NodeConfig names.
  return out as NodeConfig
}
