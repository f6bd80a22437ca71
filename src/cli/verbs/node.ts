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
import { reclock, type ReclockReport } from '../../node/reclock.ts'
import { readConfigFile, resolveSettings } from '../../config/resolve.ts'
import { formatMs } from '../../model/clockSkew.ts'

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

export const reclockVerb = defineVerb({
  name: 'reclock',
  summary: 'after a system clock that ran ahead was set right: withdraw what this stopped node stamped ahead, so that its peers take its events again',
  usage: '--data DIR [--max-clock-skew DURATION] [--dry-run]',
  settings: [SETTINGS.data, SETTINGS['max-clock-skew'], { name: 'dry-run', kind: 'boolean', description: 'print what it would withdraw and change nothing', schema: v.boolean(), inFile: false }],
  details: [
    "A node's timestamps never go back: one whose clock ran ahead (a bad NTP server, a VM restored with a wrong clock) goes on stamping after its last head once its clock is set right, and its peers hold every event it stamps until their clocks reach that time. Run this on the stopped node once its clock is right (timedatectl, chronyc tracking): it withdraws its events stamped more than --max-clock-skew ahead of its clock from its outbox, its events table and its plugins, then signs a head stamped by its clock. Its peers take that head, record the withdrawn seqs as a lost gap, and take what it publishes next; it never uses those seqs again.",
    'The withdrawn events go to DIR/withdrawn-FROM-TO.ndjson, one publish request each under the idempotency key it was published with (a new event_id for one published without a key): once the node runs, cairn publish --batch FILE publishes them again, stamped right, and a backend retrying an original request under its key is answered with the same event, whichever comes first (publishing the file twice publishes nothing twice). Membership changes among them are not in it: they are printed, for an owner to make again with cairn members. A rebuild of each plugin that had applied them is asked for (it runs at the next start; not with events-retention, which deleted rows a rebuild would need: then it says so), and an own snapshot that holds them leaves the outbox.',
    'It refuses while the node runs, and when the last heads of other producers put this clock behind theirs (it was set back, not ahead: set it right and start the node). Prints a JSON report on stdout, and what to do next on stderr. See docs/operations.md, "Clocks".'
  ].join('\n'),
  async run({ values, env, out, err }) {
    const dir = values.data as string
    const known = new Set(RUN_SETTINGS.map((s) => s.name))
    // The node's own settings (config.json, the environment): what it runs with is what is withdrawn against.
    const config = toNodeConfig({ ...resolveSettings(RUN_SETTINGS, {}, env, readConfigFile(dir, known)), data: dir, 'max-clock-skew': values['max-clock-skew'] })
    const report = await reclock(config, { dryRun: values['dry-run'] === true })
    out(JSON.stringify(report))
    for (const line of reclockLines(report, dir, config.maxClockSkew)) err(line)
    return 0
  }
})

/** @returns what `cairn reclock` did, or would do, and what is left to the operator, for a person */
function reclockLines(r: ReclockReport, dir: string, skewMs: number): string[] {
  const finished =
    r.finished_file == null
      ? []
      : [
          `an earlier run withdrew events and stopped before naming their file: it is ${r.finished_file} now; once the node runs, cairn publish --data ${dir} --batch ${r.finished_file} publishes them again`
        ]
  if (r.withdrawn == null && r.ahead_ms <= skewMs) {
    const nothing = r.dry_run ? 'nothing would change' : 'nothing changed'
    return [
      ...finished,
      r.previous_hlc == null
        ? `${dir} has signed no head yet: nothing to reclock, ${nothing}`
        : `nothing to reclock: the last head of ${dir} is stamped ${r.previous_hlc}, ${formatMs(r.ahead_ms)} ahead of this clock, within --max-clock-skew ${formatMs(skewMs)}; ${nothing}. If this clock is still ahead, set it right first (NTP)`
    ]
  }
  const would = r.dry_run ? 'would ' : ''
  const lines: string[] = [...finished]
  const w = r.withdrawn
  if (w != null) {
    lines.push(
      `${would}withdraw seq ${w.from_seq}..${w.to_seq} (${w.count} event(s) stamped ${w.first_hlc} to ${w.last_hlc}, up to ${formatMs(r.ahead_ms)} ahead of this clock); its peers record them as a lost gap and take what follows`
    )
  } else lines.push(`${would}withdraw no event: only the last head (stamped ${r.previous_hlc}, ${formatMs(r.ahead_ms)} ahead of this clock) is replaced`)
  if (r.head != null) lines.push(`signed head ${r.head.seq} stamped ${r.head.hlc}; start the node`)
  if (r.republish_file != null) {
    lines.push(
      `${r.dry_run ? 'would write' : 'wrote'} the withdrawn events to ${r.republish_file}: once the node runs, cairn publish --data ${dir} --batch ${r.republish_file} publishes them again, stamped right, under the idempotency keys they were published with (freed: a backend's retry under one publishes its event again, once with the file's), and new event_ids for those published without one (backends that read this node's stream saw them once already, under the old ones)`
    )
  }
  for (const c of r.membership_changes) lines.push(`${would}withdraw membership change seq ${c.seq} ${JSON.stringify(c.change)}: an owner makes it again with cairn members`)
  if (r.rebuild.length > 0) lines.push(`${r.dry_run ? 'would ask' : 'asked'} a rebuild of plugin(s) ${r.rebuild.join(', ')}: their tables held withdrawn events; it runs at the next start`)
  if (r.rebuild_not_asked.length > 0) {
    lines.push(
      `plugin(s) ${r.rebuild_not_asked.join(', ')} applied withdrawn events, and their tables still show them: no rebuild is asked for, as events-retention deleted rows a rebuild would need (cairn plugins rebuild NAME drops both what the withdrawn events did and what the deleted rows did)`
    )
  }
  if (r.snapshots_dropped.length > 0) lines.push(`${would}drop the own snapshot(s) of ${r.snapshots_dropped.join(', ')} from the outbox: they held withdrawn events`)
  return lines
}

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
