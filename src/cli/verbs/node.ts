import * as v from 'valibot'
import { defineVerb } from '../verb.ts'
import { RUN_SETTINGS, SETTINGS, toNodeConfig } from '../../config/catalog.ts'
import { BUILTIN_PLUGINS } from '../../../plugins/mod.ts'
import { stderr, stderrIsTerminal } from '../../runtime/stdio.ts'
import { OPTIONS } from '../options.ts'
import { initDataDir } from '../../datadir/init.ts'
import { rekeyDataDir } from '../../datadir/rekey.ts'
import { loadIdentity } from '../../datadir/load.ts'
import { readRunInfo } from '../../datadir/runInfo.ts'
import { CairnNode } from '../../node/node.ts'

export const initVerb = defineVerb({
  name: 'init',
  summary: "create a node's data directory (identity, swarm.key, api.token, database, block store)",
  usage: '--data DIR (--new-network | --swarm-key FILE [--owner PEER_ID]... | --join FILE)',
  settings: [SETTINGS.data, OPTIONS['new-network'], OPTIONS['swarm-key'], OPTIONS.owner, OPTIONS.join],
  details:
    "Prints the new peer id. With --new-network this node is the network's first owner; a node that joins names the network's founding owners with --owner (repeat it for each; cairn members list shows them with added by 'founder'), so that it applies the owners' membership changes. Every node must be given the same founders. --join FILE takes the swarm key, the founders and the peers to connect to (written to config.json unless one exists) from a join file that cairn members join-file FILE writes on a member. On an existing data directory it changes nothing and says so, except that --owner records owners in a directory that has none yet.",
  async run({ values, out, err }) {
    const dir = values.data as string
    const owners = (values.owner as string[] | undefined) ?? []
    const r = await initDataDir(dir, { newNetwork: values['new-network'] === true, swarmKeyFile: values['swarm-key'] as string | undefined, owners, joinFile: values.join as string | undefined })
    if (!r.created) {
      err(
        r.ownersRecorded === true
          ? `${dir} is already a cairn data directory; recorded the owners ${r.owners.join(', ')} (restart the node to apply)`
          : `${dir} is already a cairn data directory; nothing changed`
      )
      out(r.peerId)
      return 0
    }
    out(r.peerId)
    err(`created ${dir}; start the node with: cairn run --data ${dir}`)
    return 0
  }
})

export const rekeyVerb = defineVerb({
  name: 'rekey',
  summary: "replace a stopped node's swarm key, to rotate the network's key (keeps the old one as swarm.key.previous)",
  usage: '--data DIR (--new | --swarm-key FILE)',
  settings: [
    SETTINGS.data,
    { name: 'new', kind: 'boolean', description: 'make a new random swarm key (on the first node of a rotation)', schema: v.boolean(), inFile: false },
    { ...OPTIONS['swarm-key'], description: 'switch to the swarm key in FILE (the new key the first node made)' }
  ],
  details:
    'Rotating the key shuts out whoever holds only the old one (a removed member, a leaked key). On the first node, stopped: cairn rekey --new, then copy its new swarm.key (or a cairn members join-file) to every remaining member over a secure channel; on each of them, stopped: cairn rekey --swarm-key FILE, then start it. Nodes that switched connect to each other; the others rejoin once they switch. Events, outboxes and identities are kept. Prints the network id (a hash of the key) before and after.',
  async run({ values, out }) {
    const r = await rekeyDataDir(values.data as string, { newKey: values.new === true, keyFile: values['swarm-key'] as string | undefined })
    out(JSON.stringify({ network_before: r.before, network_after: r.after }))
    return 0
  }
})

export const runVerb = defineVerb({
  name: 'run',
  summary: 'start the node and keep it running until SIGINT or SIGTERM',
  usage: '[--data DIR] [--listen MULTIADDR]... [--bootstrap MULTIADDR]... [--http HOST:PORT] [--plugins DIR]...',
  settings: RUN_SETTINGS,
  details:
    'Every setting can also come from the environment (CAIRN_<NAME>, lists comma-separated) or from config.json in the data directory; a flag wins over the environment, which wins over config.json. A DURATION is a number and a unit (ms, s, m, h or d: 500ms, 30s, 48h, 7d), in config.json too; a SIZE is a number of bytes with an optional unit (262144, 256KiB, 1MiB; B, KB, KiB, MB, MiB, GB, GiB); N is a whole number. A value outside the limits its setting lists is refused at start.',
  async run({ values }) {
    const config = toNodeConfig(values)
    // What the node and libp2p create while they run (datastore files, SQLite's -wal and -shm) is the
    // owner's alone from the start, not only once a stop or the next start tightens it (a SIGKILL skips both).
    process.umask(0o077)
    // On a terminal a person watches, catch-up progress is a bar there; elsewhere log lines.
    const terminal = stderrIsTerminal() && config.logFormat !== 'json' ? (text: string) => stderr.write(text) : undefined
    const node = new CairnNode(config, { plugins: BUILTIN_PLUGINS, terminal })
    // An exception nothing caught is one structured line, never the runtime's dump. A stop aborts libp2p's dials
    // under way, and @libp2p/tcp 11 hands that abort to net.connect, whose socket then raises an AbortError no
    // listener takes: harmless once the node stops. Any other ends the process, as it would have.
    process.on('uncaughtException', (err) => {
      if (err.name === 'AbortError' && (node.status === 'stopping' || node.status === 'stopped')) {
        node.log.debug(`a dial aborted by the stop raised: ${err.message}`, { reason: 'dial_aborted' })
        return
      }
      node.log.error(`uncaught exception: ${err.message}`, { reason: 'uncaught_exception', error: err.name, stack: err.stack })
      process.exit(1)
    })
    // The signals are caught before the start, which writes node.json (a supervisor may signal as soon as it
    // sees it): one that comes during the start stops the node once it has started.
    let signalled: string | undefined
    let onSignal: ((signal: string) => void) | undefined
    const caught = (signal: string): void => {
      if (onSignal != null) onSignal(signal)
      else signalled ??= signal
    }
    process.once('SIGINT', () => {
      caught('SIGINT')
    })
    process.once('SIGTERM', () => {
      caught('SIGTERM')
    })
    await node.start()
    await new Promise<void>((resolve) => {
      const stop = (signal: string): void => {
        node.log.info(`received ${signal}, stopping`)
        const force = setTimeout(() => {
          // The logger writes synchronously: an exit right after it loses nothing (stderr.line would).
          node.log.error(`did not stop within 10 s (still stopping ${node.stoppingStep ?? 'the node'}); exiting`, { reason: 'stop_timeout', step: node.stoppingStep })
          process.exit(1)
        }, 10_000)
        void node.stop().finally(() => {
          clearTimeout(force)
          resolve()
        })
      }
      onSignal = stop
      if (signalled != null) stop(signalled)
    })
    return 0
  }
})

export const idVerb = defineVerb({
  name: 'id',
  summary: "print the node's peer id, then its addresses one a line while it runs; with --json, also its HTTP endpoint",
  usage: '[--data DIR] [--json]',
  settings: [SETTINGS.data, OPTIONS.json],
  async run({ values, out }) {
    const dir = values.data as string
    const { peerId } = await loadIdentity(dir)
    const info = readRunInfo(dir)
    if (values.json === true) {
      out(JSON.stringify(info == null ? { peer_id: peerId.toString() } : { peer_id: peerId.toString(), addrs: info.addrs, http: info.http }))
    } else {
      out(peerId.toString())
      for (const a of info?.addrs ?? []) out(a)
    }
    return 0
  }
})
