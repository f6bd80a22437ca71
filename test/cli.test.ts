import { describe, expect, test } from 'bun:test'
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync, readdirSync, readFileSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { cairn, cairnCommand, cairnInMountNamespace, collectText, crashLines, EXAMPLES, NodeProcess, readOnlyMount, tempDir, waitFor } from './helpers/process.ts'
import { query } from './helpers/db.ts'
import { VERSION } from '../src/version.ts'
import { lockDataDir } from '../src/datadir/lock.ts'
import { writeRunInfo } from '../src/datadir/runInfo.ts'
import { VERBS } from '../src/cli/main.ts'
import pkg from '../package.json'

/** Starts `cairn run` on `dir` (loopback, JSON logs) and sends it SIGTERM while it starts. @returns its exit code and stderr */
async function sigtermDuringStart(dir: string, args: string[] = []): Promise<{ code: number; stderr: string }> {
  const proc = Bun.spawn(cairnCommand('binary', ['run', '--data', dir, '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0', '--log-format', 'json', ...args]), {
    env: { ...process.env, CAIRN_DATA: '' },
    stdout: 'ignore',
    stderr: 'pipe'
  })
  try {
    const stderr = collectText(proc.stderr)
    // The membership is read early in the start, before node.json is written and the node has started.
    await waitFor('the start under way', () => stderr.text().includes('membership:'), 30_000)
    proc.kill('SIGTERM')
    const code = await proc.exited
    await stderr.done
    return { code, stderr: stderr.text() }
  } finally {
    proc.kill()
  }
}

describe('the cairn binary', () => {
  test('--version prints the version that package.json holds, with the commit the binary was built from as its build', async () => {
    const r = await cairn(['--version'])
    expect(r.code).toBe(0)
    const [version, build] = r.stdout.trim().split('+')
    expect(version).toBe(pkg.version)
    expect(VERSION).toBe(pkg.version)
    // 12 hex digits of a commit of this repository (-dirty when the checkout had changes), as build.ts gives it
    expect(build).toMatch(/^[0-9a-f]{12}(-dirty)?$/)
    expect(Bun.spawnSync(['git', 'cat-file', '-e', `${build.replace(/-dirty$/, '')}^{commit}`]).exitCode).toBe(0)
    expect((await cairn(['--version'], { runtime: 'bun' })).stdout).toBe(`${pkg.version}+source\n`)
  })

  test('--help lists every verb and each verb has its own --help', async () => {
    const r = await cairn(['--help'])
    expect(r.code).toBe(0)
    for (const verb of ['init', 'run', 'id', 'publish', 'events', 'status', 'export']) {
      expect(r.stdout).toContain(`  ${verb}`)
      const h = await cairn([verb, '--help'])
      expect(h.code).toBe(0)
      expect(h.stdout).toContain(`Usage: cairn ${verb}`)
    }
    // Its closing line names the verbs that take no --data; every other verb lists it.
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('Every verb but demo takes --data DIR (or CAIRN_DATA); the default is ~/.cairn.')
    for (const verb of VERBS) {
      const h = await cairn([verb.name, '--help'])
      expect([verb.name, h.stdout.includes('\n  --data DIR ')]).toEqual([verb.name, verb.name !== 'demo'])
    }
    expect((await cairn(['demo', '--data', 'x'])).stderr).toBe('cairn demo: unknown flag --data; see cairn demo --help\n')
  })

  test('an unknown verb or flag is an error that names it and points to --help', async () => {
    const verb = await cairn(['frobnicate'])
    expect(verb.code).toBe(2)
    expect(verb.stderr).toContain('unknown verb "frobnicate"')
    expect(verb.stderr).toContain('--help')
    const flag = await cairn(['run', '--frob'])
    expect(flag.code).toBe(1)
    expect(flag.stderr).toContain('unknown flag --frob')
    expect(flag.stderr).toContain('cairn run --help')
  })

  test('init creates identity, swarm.key and api.token with mode 0600, and changes nothing the second time', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'node')
    const first = await cairn(['init', '--data', dir, '--new-network'])
    expect(first.code).toBe(0)
    const peerId = first.stdout.trim()
    expect(peerId).toMatch(/^12D3Koo/)
    for (const f of ['identity.key', 'swarm.key', 'api.token']) expect(statSync(join(dir, f)).mode & 0o777).toBe(0o600)
    for (const f of ['cairn.db', 'blocks.db', 'datastore']) expect(existsSync(join(dir, f))).toBe(true)
    expect(readFileSync(join(dir, 'swarm.key'), 'utf8')).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}$/)
    const before = readdirSync(dir).map((f) => [f, statSync(join(dir, f)).mtimeMs])
    const again = await cairn(['init', '--data', dir, '--new-network'])
    expect(again.code).toBe(0)
    expect(again.stdout.trim()).toBe(peerId)
    expect(again.stderr).toContain('nothing changed')
    expect(readdirSync(dir).map((f) => [f, statSync(join(dir, f)).mtimeMs])).toEqual(before)
  })

  test('init needs exactly one of --new-network and --swarm-key, and refuses a bad key file', async () => {
    using tmp = tempDir()
    const none = await cairn(['init', '--data', join(tmp.path, 'a')])
    expect(none.code).toBe(1)
    expect(none.stderr).toContain('--new-network')
    writeFileSync(join(tmp.path, 'bad.key'), 'not a key')
    const bad = await cairn(['init', '--data', join(tmp.path, 'b'), '--swarm-key', join(tmp.path, 'bad.key')])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toContain('not a swarm key')
    expect(existsSync(join(tmp.path, 'b'))).toBe(false)
  })

  test('run on a missing data directory says how to create one', async () => {
    using tmp = tempDir()
    const r = await cairn(['run', '--data', join(tmp.path, 'nope'), '--http', '127.0.0.1:0'])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('cairn init')
  })

  test('init and run on a path that is a file say that it is no directory; init on a read-only file system says so', async () => {
    using tmp = tempDir()
    const file = join(tmp.path, 'file')
    writeFileSync(file, 'not a directory')
    const notADirectory = `${file} is not a directory: --data names a data directory (cairn init --data DIR creates one); move that file away or pick another path`
    const init = await cairn(['init', '--data', file, '--new-network'])
    expect(init.code).toBe(1)
    expect(init.stderr).toBe(`cairn init: ${notADirectory}\n`)
    const under = await cairn(['init', '--data', join(file, 'n'), '--new-network'])
    expect(under.code).toBe(1)
    expect(under.stderr).toStartWith(`cairn init: Cannot create the data directory ${join(file, 'n')}: ENOTDIR`)
    expect(under.stderr).toEndWith('a part of that path is a file, not a directory: pick another --data path\n')
    for (const verb of ['run', 'status']) {
      const r = await cairn([verb, '--data', file])
      expect(r.code).toBe(1)
      expect(r.stderr).toBe(`cairn ${verb}: ${notADirectory}\n`)
    }
    const readOnly = await cairnInMountNamespace(readOnlyMount(tmp.path), ['init', '--data', join(tmp.path, 'n'), '--new-network'])
    if (readOnly == null) return console.log("skipped the read-only file system: needs root and util-linux's unshare -m")
    expect(readOnly.code).toBe(1)
    expect(readOnly.stderr).toBe(
      `cairn init: Cannot create the data directory ${join(tmp.path, 'n')}: EROFS: read-only file system, mkdir '${join(tmp.path, 'n')}'; ${join(tmp.path, 'n')} is on a read-only file system: mount it read-write, then run this again\n`
    )
  })

  test('an entry of the data directory that is a file where a directory belongs, or the reverse, stops run and the verbs with a line naming it', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'n')
    await cairn(['init', '--data', dir, '--new-network'])
    rmSync(join(dir, 'datastore'), { recursive: true })
    writeFileSync(join(dir, 'datastore'), '')
    const datastore = `${join(dir, 'datastore')} is not a directory, where cairn keeps a directory: move it away (the next cairn run makes an empty one: it holds only the peers' addresses, learnt again from --bootstrap)`
    const run = await cairn(['run', '--data', dir, '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'])
    expect(run.code).toBe(1)
    expect(run.stderr).toBe(`cairn run: ${datastore}\n`)
    const doctor = await cairn(['doctor', '--data', dir])
    expect(doctor.code).toBe(1)
    // doctor names it and goes on with the other checks.
    expect(doctor.stdout).toContain(`ok    data directory   ok\nFAIL  entries          ${datastore}`)
    expect(doctor.stdout).toContain('ok    identity.key     ok')
    expect(doctor.stdout).toContain('ok    cairn.db         ok')
    rmSync(join(dir, 'datastore'))
    mkdirSync(join(dir, 'datastore'))
    rmSync(join(dir, 'blocks.db'))
    mkdirSync(join(dir, 'blocks.db'))
    const status = await cairn(['status', '--data', dir])
    expect(status.code).toBe(1)
    expect(status.stderr).toBe(`cairn status: ${join(dir, 'blocks.db')} is a directory, where cairn keeps a file: move it away and restore the file from a backup\n`)
  })

  test('a SIGTERM while the node starts stops it once started, cleanly (exit 0), as a supervisor that signals early expects', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'n')
    await cairn(['init', '--data', dir, '--new-network'])
    const run = await sigtermDuringStart(dir)
    expect(run.code).toBe(0)
    expect(run.stderr).toContain('received SIGTERM, stopping')
    expect(existsSync(join(dir, 'node.json'))).toBe(false)
  })

  test('a stop while a dial of a bootstrap peer is under way logs no crash: the aborted socket raises an AbortError nothing listens for', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'n')
    await cairn(['init', '--data', dir, '--new-network'])
    const nobody = (await cairn(['init', '--data', join(tmp.path, 'other'), '--new-network'])).stdout.trim()
    // The dial of port 1 is refused within moments: a SIGTERM during the start stops the node while it is under
    // way most times, so a few rounds make the abort all but certain.
    for (let round = 0; round < 4; round++) {
      const run = await sigtermDuringStart(dir, ['--bootstrap', `/ip4/127.0.0.1/tcp/1/p2p/${nobody}`])
      expect(run.code).toBe(0)
      expect(crashLines(run.stderr)).toEqual([])
    }
  }, 120_000)

  test('run refuses a non-loopback --http address and says how to force it', async () => {
    using tmp = tempDir()
    await cairn(['init', '--data', join(tmp.path, 'n'), '--new-network'])
    const r = await cairn(['run', '--data', join(tmp.path, 'n'), '--http', '0.0.0.0:0', '--listen', '/ip4/127.0.0.1/tcp/0'])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('loopback-only')
    expect(r.stderr).toContain('--force-http')
  })

  test('run refuses to start without a swarm key', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'n')
    await cairn(['init', '--data', dir, '--new-network'])
    const { rmSync } = await import('node:fs')
    rmSync(join(dir, 'swarm.key'))
    const r = await cairn(['run', '--data', dir, '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('without a swarm key')
  })

  test('a second run on a busy data directory fails at once with a clear message', async () => {
    using tmp = tempDir()
    await using node = await NodeProcess.init(tmp.path, 'n')
    await node.start()
    const started = Date.now()
    const r = await cairn(['run', '--data', node.dir, '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('already running')
    expect(Date.now() - started).toBeLessThan(10_000)
    expect(await node.stop()).toBe(0)
  })

  test('a busy HTTP port is a clear error', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await a.start()
    const b = await NodeProcess.init(tmp.path, 'b', { network: a })
    const r = await cairn(['run', '--data', b.dir, '--http', a.http, '--listen', '/ip4/127.0.0.1/tcp/0'])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('already in use')
  })

  test('a busy or impossible --listen address is a clear one-line error naming it, never a stack trace', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'n')
    await cairn(['init', '--data', dir, '--new-network'])
    const taken = createServer()
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
    try {
      const port = (taken.address() as AddressInfo).port
      const run = async (listen: string) => await cairn(['run', '--data', dir, '--http', '127.0.0.1:0', '--listen', listen])
      const errorLines = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('cairn run:') || l.startsWith('    at '))
      const busy = await run(`/ip4/127.0.0.1/tcp/${port}`)
      expect(busy.code).toBe(1)
      expect(errorLines(busy.stderr)).toEqual([
        `cairn run: Cannot listen on /ip4/127.0.0.1/tcp/${port}: the address is already in use (another process listens on it); pick another --listen port, or /tcp/0 for any free one`
      ])
      // 192.0.2.1 (TEST-NET-1) is no address of this host.
      const elsewhere = await run('/ip4/192.0.2.1/tcp/4001')
      expect(elsewhere.code).toBe(1)
      expect(errorLines(elsewhere.stderr)).toHaveLength(1)
      expect(elsewhere.stderr).toContain('cairn run: Cannot listen on /ip4/192.0.2.1/tcp/4001: listen EADDRNOTAVAIL')
      // An --http address of another host, after a run that left its port to take again: named as given.
      const { Database } = await import('bun:sqlite')
      const db = new Database(join(dir, 'cairn.db'))
      db.run("INSERT OR REPLACE INTO meta (key, value) VALUES ('http_port', '45678')")
      db.close()
      const http = await cairn(['run', '--data', dir, '--http', '192.0.2.1:0', '--force-http', '--listen', '/ip4/127.0.0.1/tcp/0'])
      expect(http.code).toBe(1)
      expect(errorLines(http.stderr)).toEqual([expect.stringContaining('cairn run: Cannot listen on --http 192.0.2.1:0: ')])
      const udp = await run('/ip4/127.0.0.1/udp/4001/quic-v1')
      expect(udp.code).toBe(1)
      expect(errorLines(udp.stderr)).toEqual(['cairn run: Cannot listen on --listen /ip4/127.0.0.1/udp/4001/quic-v1: cairn listens on TCP addresses only, such as /ip4/0.0.0.0/tcp/4001; fix --listen'])
    } finally {
      taken.close()
    }
  })

  test("every verb that asks the running node reports an error answer with its HTTP status and the node's message", async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'n')
    await cairn(['init', '--data', dir, '--new-network'])
    // A node whose endpoint answers every request as a node with a full disk answers GET /status.
    const message = "Internal error: database or disk is full; the node's log has the details"
    using server = Bun.serve({ hostname: '127.0.0.1', port: 0, fetch: () => Response.json({ error: { code: 'internal', message, issues: [] } }, { status: 500 }) })
    using _running = { [Symbol.dispose]: lockDataDir(dir) }
    writeRunInfo(dir, { peer_id: 'p', pid: process.pid, version: VERSION, addrs: [], http: `127.0.0.1:${server.port}`, started_at: new Date().toISOString() })
    const batch = join(tmp.path, 'batch.ndjson')
    writeFileSync(batch, '{"type":"test.a","payload":{}}\n')
    const asks: Array<[string[], string]> = [
      [['status'], `Cannot read the node's status: the node answered HTTP 500: ${message}`],
      [['status', '--json'], `Cannot read the node's status: the node answered HTTP 500: ${message}`],
      [['publish', '--type', 'test.a', '--payload', '{}'], `${message} (HTTP 500)`],
      [['publish', '--batch', batch], `Cannot read the node's limits: the node answered HTTP 500: ${message}`],
      [['members', 'list'], `${message} (HTTP 500)`],
      [['plugins'], `Cannot read the node's status: the node answered HTTP 500: ${message}`],
      [['snapshot'], `${message} (HTTP 500)`],
      [['console', '--no-open'], `Cannot mint a console link: the node answered HTTP 500: ${message}`],
      [['events', '--follow'], `Cannot follow: the node answered HTTP 500: ${message}`]
    ]
    for (const [args, line] of asks) {
      const r = await cairn([...args, '--data', dir])
      expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 1, stderr: `cairn ${args[0]}: ${line}\n` })
    }
  })

  test("cairn status shows a running node of an older cairn, whose status has no applied seq, with '-' for it", async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'n')
    await cairn(['init', '--data', dir, '--new-network'])
    // What GET /status of a running 0.1.0 node from before applied_seq (6dd502f) answered, one producer kept: the
    // operator has replaced the binary and not restarted the node yet.
    const producer = '12D3KooWMLWv25nGLPwYQjtJb6NmptzCkCbATwsBSnuu3jPWBkL3'
    const older = {
      verdict: 'healthy',
      reasons: [],
      bus_root: 'bafybeiden7lqn2qygpiwrendxwfx7wlkfa63rsvdwf47w3kxtjm2nfhvpa',
      peer_id: producer,
      version: '0.1.0',
      uptime_s: 26,
      listen: [],
      peers: [],
      network: '766d39699f3d1920',
      syncing: false,
      rejections: [],
      clock: { max_skew_ms: 60000, network_offset_ms: null, publish_refused: null, producers_ahead: [] },
      plugin_state: [],
      loaded_plugins: [],
      producers: [{ producer, head_seq: 2508, processed_seq: 2508, lag_events: 0, lag_ms: 0, head_received_at: '2026-11-30T18:07:28.091Z', last_error: null, lost_gaps: 0 }],
      events: 7523,
      event_id_collisions: 0,
      outbox: { files: 2508, oldest_seq: 1, last_seq: 2508, compacted_files: 0 },
      plugins: { backlog: 0, retrying: 0, dead_letters: 0, held: 0, held_by: [] },
      housekeeping: { last: null, reclaimed_bytes: 0 },
      gaps: [],
      gaps_total: 0,
      history: [],
      quarantine: { count: 0, by_reason: {}, recent: [] }
    }
    using server = Bun.serve({ hostname: '127.0.0.1', port: 0, fetch: () => Response.json(older) })
    using _running = { [Symbol.dispose]: lockDataDir(dir) }
    writeRunInfo(dir, { peer_id: producer, pid: process.pid, version: '0.1.0', addrs: [], http: `127.0.0.1:${server.port}`, started_at: new Date().toISOString() })
    const r = await cairn(['status', '--data', dir])
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' })
    expect(r.stdout).not.toContain('undefined')
    expect(r.stdout.split('\n').find((l) => l.startsWith(`  ${producer}`))).toBe(`  ${producer.padEnd(52)}    2508       2508          -   0 events`)
  })

  test('settings come from the flag, then the environment, then config.json, then the default', async () => {
    using tmp = tempDir()
    await using node = await NodeProcess.init(tmp.path, 'n')
    const post = async (bytes: number): Promise<number> =>
      (
        await fetch(`http://${node.http}/v1/events`, {
          method: 'POST',
          headers: { authorization: `Bearer ${node.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ type: 'test.sized', payload: 'x'.repeat(bytes) })
        })
      ).status
    // default 1MiB: a 2 KB body passes
    await node.start()
    expect(await post(2000)).toBe(201)
    await node.stop()
    // config.json wins over the default; its http port 1 loses to the harness's --http flag
    writeFileSync(join(node.dir, 'config.json'), JSON.stringify({ http: '127.0.0.1:1', 'max-body-size': 1000 }))
    await node.start()
    expect(node.http).not.toBe('127.0.0.1:1')
    expect(await post(2000)).toBe(413)
    await node.stop()
    // the environment wins over config.json
    await node.start([], { CAIRN_MAX_BODY_SIZE: '4000' })
    expect(await post(2000)).toBe(201)
    await node.stop()
    // the flag wins over the environment
    await node.start(['--max-body-size', '1000'], { CAIRN_MAX_BODY_SIZE: '4000' })
    expect(await post(2000)).toBe(413)
    expect(await node.stop()).toBe(0)
  })

  test('a bad setting names the setting and where the value came from', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'n')
    await cairn(['init', '--data', dir, '--new-network'])
    const flag = await cairn(['run', '--data', dir, '--http', 'nonsense'])
    expect(flag.stderr).toContain('Invalid setting http (from --http)')
    const env = await cairn(['run', '--data', dir], { env: { CAIRN_HTTP: 'nonsense' } })
    expect(env.stderr).toContain('Invalid setting http (from CAIRN_HTTP)')
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ 'announce-interval': 'soon' }))
    const file = await cairn(['run', '--data', dir])
    expect(file.stderr).toContain('Invalid setting announce-interval (from "announce-interval" in config.json)')
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ htttp: '127.0.0.1:0' }))
    const unknown = await cairn(['run', '--data', dir])
    expect(unknown.stderr).toContain('unknown setting "htttp"')
    writeFileSync(join(dir, 'config.json'), '{ not json')
    const broken = await cairn(['run', '--data', dir])
    expect(broken.code).toBe(1)
    expect(broken.stderr).toContain('config.json')
  })

  test('a value the node cannot work with is refused at start, in one line naming the setting, the value and the expected form', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'n')
    await cairn(['init', '--data', dir, '--new-network'])
    const run = async (args: string[], env: Record<string, string> = {}) => {
      const r = await cairn(['run', '--data', dir, '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0', ...args], { env })
      return { code: r.code, stderr: r.stderr }
    }
    const duration = 'is not a duration: expected a number and a unit, such as 30s, 15m, 24h, 7d'
    // heads-per-second 0 took no head ever (and flooded stderr with TimeoutOverflowWarning); max-batch 0 refused every array publish
    expect(await run(['--heads-per-second', '0'])).toEqual({
      code: 1,
      stderr: 'cairn run: Invalid setting heads-per-second (from --heads-per-second): "0" is too small: expected a whole number of at least 1\n'
    })
    expect(await run(['--max-batch', '0'])).toEqual({ code: 1, stderr: 'cairn run: Invalid setting max-batch (from --max-batch): "0" is too small: expected a whole number of at least 1\n' })
    expect(await run(['--retention', 'banana'])).toEqual({ code: 1, stderr: `cairn run: Invalid setting retention (from --retention): "banana" ${duration}\n` })
    expect(await run([], { CAIRN_RETENTION: '2' })).toEqual({ code: 1, stderr: `cairn run: Invalid setting retention (from CAIRN_RETENTION): "2" ${duration}\n` })
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ retention: 48 }))
    expect(await run([])).toEqual({ code: 1, stderr: `cairn run: Invalid setting retention (from "retention" in config.json): 48 ${duration}\n` })
  })

  test("a negative number after a numeric, size or duration flag gets the setting's own message, as after =; a value starting with a dash elsewhere says how to give it", async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'none')
    const numeric = VERBS.flatMap((verb) =>
      verb.settings
        .filter((s) => s.kind === 'string' && ['N', 'SIZE', 'DURATION', 'CURSOR'].includes(s.value ?? ''))
        .map((s) => ({ verb: verb.name, flag: `--${s.name}`, name: s.name, data: verb.settings.some((d) => d.name === 'data') ? ['--data', dir] : [] }))
    )
    expect(numeric.length).toBeGreaterThan(20)
    for (const { verb, flag, name, data } of numeric) {
      const spaced = await cairn([verb, ...data, flag, '-5'])
      const joined = await cairn([verb, ...data, `${flag}=-5`])
      expect({ verb, flag, code: spaced.code, stderr: spaced.stderr }).toEqual({ verb, flag, code: 1, stderr: joined.stderr })
      expect(spaced.stderr).toStartWith(`cairn ${verb}: Invalid setting ${name} (from ${flag}): "-5" is `)
    }
    // A fraction with a unit is a number too.
    expect((await cairn(['run', '--data', dir, '--fetch-timeout', '-1.5h'])).stderr).toBe(
      'cairn run: Invalid setting fetch-timeout (from --fetch-timeout): "-1.5h" is not a duration: expected a number and a unit, such as 30s, 15m, 24h, 7d\n'
    )
    expect((await cairn(['run', '--data', '-x'])).stderr).toBe(
      'cairn run: --data needs a value DIR, and -x looks like a flag; to give --data a value that starts with a dash, write --data=-x; see cairn run --help\n'
    )
    expect((await cairn(['run', '--data'])).stderr).toBe('cairn run: --data needs a value DIR; see cairn run --help\n')
  })

  test('CAIRN_DATA stands for --data', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'n')
    const init = await cairn(['init', '--new-network'], { env: { CAIRN_DATA: dir } })
    expect(init.code).toBe(0)
    const id = await cairn(['id', '--json'], { env: { CAIRN_DATA: dir } })
    expect(JSON.parse(id.stdout)).toEqual({ peer_id: init.stdout.trim() })
  })

  test('a running node answers /healthz, /readyz and /status, id shows its addresses (with --json its endpoint too), and SIGTERM stops it with exit 0', async () => {
    using tmp = tempDir()
    await using node = await NodeProcess.init(tmp.path, 'n')
    await node.start()
    expect(await (await fetch(`http://${node.http}/healthz`)).json()).toEqual({ status: 'ok' })
    const ready = await waitFor('readyz', async () => {
      const r = await fetch(`http://${node.http}/readyz`)
      return r.status === 200 ? r : undefined
    })
    expect(ready.status).toBe(200)
    const status = await node.status()
    expect(status.peer_id).toBe(node.peerId)
    expect(status.version).toBe(VERSION)
    // which build runs: status names it as --version does, so that an upgrade shows before the restart and after
    const version = (await cairn(['--version'])).stdout.trim()
    expect(`${status.version}+${status.build}`).toBe(version)
    expect((await cairn(['status', '--data', node.dir])).stdout).toContain(`  version ${version}\n`)
    const id = JSON.parse((await cairn(['id', '--data', node.dir, '--json'])).stdout)
    expect(id).toEqual({ peer_id: node.peerId, addrs: status.listen, http: node.http })
    // Without --json, as its --help says: the peer id, then the addresses one a line while it runs.
    expect((await cairn(['id', '--help'])).stdout).toContain("Print the node's peer id, then its addresses one a line while it runs; with --json, also its HTTP endpoint.")
    expect((await cairn(['id', '--data', node.dir])).stdout).toBe([node.peerId, ...status.listen].map((l) => `${l}\n`).join(''))
    expect(await node.stop('SIGTERM')).toBe(0)
    expect(JSON.parse((await cairn(['id', '--data', node.dir, '--json'])).stdout)).toEqual({ peer_id: node.peerId })
    expect((await cairn(['id', '--data', node.dir])).stdout).toBe(`${node.peerId}\n`)
  })

  test('cairn publish without --version publishes version 1 of the type, as its --help says, even where a plugin reads a newer one', async () => {
    using tmp = tempDir()
    await using node = await NodeProcess.init(tmp.path, 'n')
    // examples/document-sharing.ts reads document.shared v2 natively and v1 through its upcaster.
    await node.start(['--plugins', EXAMPLES])
    expect((await cairn(['publish', '--help'])).stdout).toMatch(/--version N +the payload's schema version \(default 1, whatever newer versions local plugins read\)/)
    const v1 = await cairn(['publish', '--data', node.dir, '--type', 'document.shared', '--payload', '{"document_id":"d1","with":"ann@example.com"}'])
    expect([v1.code, v1.stderr]).toEqual([0, ''])
    const v2 = await cairn(['publish', '--data', node.dir, '--type', 'document.shared', '--version', '2', '--payload', '{"document_id":"d2","shared_with":["bob@example.com"]}'])
    expect([v2.code, v2.stderr]).toEqual([0, ''])
    expect(query(node.dir, 'SELECT version FROM events ORDER BY seq')).toEqual([{ version: 1 }, { version: 2 }])
  })

  test('cairn publish prints the fields its --help names, {event_id, seq, cid, replayed}, one line per event with --batch', async () => {
    using tmp = tempDir()
    await using node = await NodeProcess.init(tmp.path, 'n')
    await node.start()
    const help = (await cairn(['publish', '--help'])).stdout
    expect(help).toContain('Publish one event through the running node; prints {event_id, seq, cid, replayed}.')
    expect(help).toContain('With --batch, prints one {event_id, seq, cid, replayed} line per event, in order.')
    const one = await cairn(['publish', '--data', node.dir, '--type', 'test.fields', '--payload', '{}'])
    expect(Object.keys(JSON.parse(one.stdout))).toEqual(['event_id', 'seq', 'cid', 'replayed'])
    const batch = await cairn(['publish', '--data', node.dir, '--batch', '-'], { stdin: '{"type":"test.fields","payload":{}}\n{"type":"test.fields","payload":{}}\n' })
    expect(
      batch.stdout
        .trim()
        .split('\n')
        .map((l) => Object.keys(JSON.parse(l)))
    ).toEqual([
      ['event_id', 'seq', 'cid', 'replayed'],
      ['event_id', 'seq', 'cid', 'replayed']
    ])
  })

  test('/v1 routes need the bearer token', async () => {
    using tmp = tempDir()
    await using node = await NodeProcess.init(tmp.path, 'n')
    await node.start()
    const none = await fetch(`http://${node.http}/v1/events`, { method: 'POST', body: '{}' })
    expect(none.status).toBe(401)
    const wrong = await fetch(`http://${node.http}/v1/events`, { method: 'POST', body: '{}', headers: { authorization: 'Bearer nope' } })
    expect(wrong.status).toBe(401)
    const json = { authorization: `Bearer ${node.token}`, 'content-type': 'application/json' }
    const malformed = await fetch(`http://${node.http}/v1/events`, { method: 'POST', body: '{ nope', headers: json })
    expect(malformed.status).toBe(400)
    const invalid = await fetch(`http://${node.http}/v1/events`, { method: 'POST', body: JSON.stringify({ type: 'Bad Type', payload: {} }), headers: json })
    expect(invalid.status).toBe(400)
    expect((await invalid.json()).error.issues[0].path).toBe('type')
    expect(await node.stop()).toBe(0)
  })
})
