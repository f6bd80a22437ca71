import * as v from 'valibot'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { BoolSchema, DurationSchema, HostPortSchema, IntSchema, SizeSchema, StringListSchema, type Setting } from './settings.ts'

/** The default data directory: `$CAIRN_DATA`, else `~/.cairn`. */
export const DEFAULT_DATA_DIR = join(homedir(), '.cairn')
/** The default swarm (libp2p TCP) listen address. */
export const DEFAULT_LISTEN = '/ip4/0.0.0.0/tcp/7401'
/** The default loopback HTTP endpoint. */
export const DEFAULT_HTTP = '127.0.0.1:7400'

const str = (message: string) => v.pipe(v.string(message), v.minLength(1, message))

/** Every setting, by name. Verbs pick the ones they take. */
export const SETTINGS = {
  data: { name: 'data', kind: 'string', value: 'DIR', description: `the node's data directory (default ${DEFAULT_DATA_DIR})`, schema: str('Expected a directory path'), default: DEFAULT_DATA_DIR, inFile: false },
  listen: { name: 'listen', kind: 'string', multiple: true, value: 'MULTIADDR', description: `swarm address to listen on (default ${DEFAULT_LISTEN}; port 0 picks a free port)`, schema: StringListSchema, default: [DEFAULT_LISTEN] },
  bootstrap: { name: 'bootstrap', kind: 'string', multiple: true, value: 'MULTIADDR', description: 'a peer to connect to and keep connected, with /p2p/<peer id>', schema: StringListSchema, default: [] },
  http: { name: 'http', kind: 'string', value: 'HOST:PORT', description: `the loopback health/publish endpoint (default ${DEFAULT_HTTP}; port 0 picks a free port)`, schema: HostPortSchema, default: DEFAULT_HTTP },
  'force-http': { name: 'force-http', kind: 'boolean', description: 'allow --http on a non-loopback address (anyone who can reach it can read status; /v1 still needs the token)', schema: BoolSchema, default: false },
  plugins: { name: 'plugins', kind: 'string', multiple: true, value: 'DIR', description: 'a directory of external plugin files (.js/.ts) to load', schema: StringListSchema, default: [] },
  'log-level': { name: 'log-level', kind: 'string', value: 'LEVEL', description: 'debug, info, warn or error (default info)', schema: v.picklist(['debug', 'info', 'warn', 'error'], 'Expected debug, info, warn or error'), default: 'info' },
  'log-format': { name: 'log-format', kind: 'string', value: 'FORMAT', description: 'pretty or json (default: pretty on a terminal, json otherwise)', schema: v.picklist(['pretty', 'json'], 'Expected pretty or json'), default: undefined },
  'announce-interval': { name: 'announce-interval', kind: 'string', value: 'DURATION', description: 'how often to re-announce known heads to peers (default 5s)', schema: DurationSchema, default: '5s' },
  'gossip-hints': { name: 'gossip-hints', kind: 'string', value: 'BOOL', description: 'announce new heads over gossipsub at once (default true; false leaves only the head exchange with peers)', schema: BoolSchema, default: 'true' },
  'fetch-timeout': { name: 'fetch-timeout', kind: 'string', value: 'DURATION', description: 'how long to wait for one block from peers before trying again later (default 10s)', schema: DurationSchema, default: '10s' },
  'max-event-size': { name: 'max-event-size', kind: 'string', value: 'SIZE', description: 'the largest event file accepted or published (default 256KiB, at most 3MiB: one block)', schema: v.pipe(SizeSchema, v.maxValue(3 * 1024 * 1024, 'An event file is one block: at most 3MiB')), default: '256KiB' },
  'max-body-size': { name: 'max-body-size', kind: 'string', value: 'SIZE', description: 'the largest HTTP request body (default 1MiB)', schema: SizeSchema, default: '1MiB' },
  'max-batch': { name: 'max-batch', kind: 'string', value: 'N', description: 'the most events one group commit writes (default 5000)', schema: IntSchema, default: 5000 }
} satisfies Record<string, Setting>

/** The settings `run` takes, which config.json may hold. */
export const RUN_SETTINGS: Setting[] = [
  SETTINGS.data, SETTINGS.listen, SETTINGS.bootstrap, SETTINGS.http, SETTINGS['force-http'], SETTINGS.plugins,
  SETTINGS['log-level'], SETTINGS['log-format'], SETTINGS['announce-interval'], SETTINGS['gossip-hints'],
  SETTINGS['fetch-timeout'], SETTINGS['max-event-size'], SETTINGS['max-body-size'], SETTINGS['max-batch']
]

/** The resolved settings of a running node. */
export interface NodeConfig {
  data: string
  listen: string[]
  bootstrap: string[]
  http: { host: string, port: number }
  'force-http': boolean
  plugins: string[]
  'log-level': 'debug' | 'info' | 'warn' | 'error'
  'log-format'?: 'pretty' | 'json'
  'announce-interval': number
  'gossip-hints': boolean
  'fetch-timeout': number
  'max-event-size': number
  'max-body-size': number
  'max-batch': number
}
