import * as v from 'valibot'
import { IntSchema, type Setting } from '../config/settings.ts'

const text = (message: string) => v.pipe(v.string(message), v.minLength(1, message))

/** Flags of one verb that are not node settings. */
export const OPTIONS = {
  json: { name: 'json', kind: 'boolean', description: 'print JSON for scripts', schema: v.boolean(), inFile: false },
  'new-network': { name: 'new-network', kind: 'boolean', description: 'start a new network with a new random swarm key', schema: v.boolean(), inFile: false },
  join: {
    name: 'join',
    kind: 'string',
    value: 'FILE',
    description: 'join an existing network from a join file (cairn members join-file on a member writes it): its swarm key, founding owners and peers to connect to',
    schema: text('Expected a file path'),
    inFile: false
  },
  'swarm-key': { name: 'swarm-key', kind: 'string', value: 'FILE', description: 'join an existing network: copy its swarm.key from FILE', schema: text('Expected a file path'), inFile: false },
  owner: {
    name: 'owner',
    kind: 'string',
    multiple: true,
    value: 'PEER_ID',
    description: "a founding owner of the network this node joins (cairn members list shows founders with added by 'founder'); only owners' signed changes change the membership",
    schema: v.array(v.string()),
    inFile: false
  },
  name: { name: 'name', kind: 'string', value: 'NAME', description: "the member's display name", schema: text('Expected a name'), inFile: false },
  role: {
    name: 'role',
    kind: 'string',
    value: 'ROLE',
    description: 'member (writes events) or owner (also changes the membership); default member',
    schema: v.picklist(['member', 'owner'], 'Expected member or owner'),
    inFile: false
  },
  type: { name: 'type', kind: 'string', value: 'TYPE', description: 'the event type, such as workspace.invited', schema: text('Expected an event type'), inFile: false },
  payload: { name: 'payload', kind: 'string', value: 'JSON', description: "the payload as JSON ('-' reads it from standard input)", schema: text('Expected JSON'), inFile: false },
  batch: {
    name: 'batch',
    kind: 'string',
    value: 'FILE',
    description: "publish the events in FILE, one JSON request per line ({type, payload, …}; '-' reads standard input), in batches of up to 1000 that each commit whole",
    schema: text('Expected a file path'),
    inFile: false
  },
  id: {
    name: 'id',
    kind: 'string',
    value: 'KEY',
    description:
      'the idempotency key (up to 256 UTF-16 code units, an emoji counting 2; a UUIDv7 is also the event_id); re-publishing a key with the same request returns the first result, with another request is refused',
    schema: text('Expected an idempotency key'),
    inFile: false
  },
  actor: { name: 'actor', kind: 'string', value: 'ACTOR', description: 'who caused the event (the authentication context)', schema: text('Expected a string'), inFile: false },
  version: { name: 'version', kind: 'string', value: 'N', description: "the payload's schema version (default: the newest a local plugin declares, else 1)", schema: IntSchema, inFile: false },
  'correlation-id': { name: 'correlation-id', kind: 'string', value: 'ID', description: 'correlates events of one flow', schema: text('Expected a string'), inFile: false },
  'causation-id': { name: 'causation-id', kind: 'string', value: 'ID', description: 'the event that caused this one', schema: text('Expected a string'), inFile: false },
  producer: { name: 'producer', kind: 'string', value: 'PEER_ID', description: 'only events of this producer', schema: text('Expected a peer id'), inFile: false },
  after: { name: 'after', kind: 'string', value: 'CURSOR', description: 'only events after this cursor (the local arrival number)', schema: IntSchema, inFile: false },
  limit: {
    name: 'limit',
    kind: 'string',
    value: 'N',
    description: 'at most N events (default 1000; with --json and no --limit, every event, read a page at a time)',
    schema: IntSchema,
    inFile: false
  },
  follow: { name: 'follow', kind: 'boolean', description: 'keep printing new events as they arrive (needs the running node)', schema: v.boolean(), inFile: false },
  dead: { name: 'dead', kind: 'boolean', description: 'every dead letter', schema: v.boolean(), inFile: false },
  effects: { name: 'effects', kind: 'boolean', description: 'given-up effects (they threw PermanentError) instead of dead-lettered events', schema: v.boolean(), inFile: false },
  since: {
    name: 'since',
    kind: 'string',
    value: 'TIME',
    description: 'only events received since TIME (ISO timestamp, or a duration back from now such as 24h)',
    schema: text('Expected a time'),
    inFile: false
  },
  plugin: { name: 'plugin', kind: 'string', value: 'NAME', description: 'only this plugin', schema: text('Expected a plugin name'), inFile: false },
  dir: { name: 'dir', kind: 'string', value: 'DIR', description: 'the directory to write into (default: the current one)', schema: text('Expected a directory'), inFile: false },
  'no-open': { name: 'no-open', kind: 'boolean', description: 'only print the link; do not start a browser', schema: v.boolean(), inFile: false },
  car: { name: 'car', kind: 'string', value: 'FILE', description: 'the CAR file to write', schema: text('Expected a file path'), inFile: false }
} satisfies Record<string, Setting>
