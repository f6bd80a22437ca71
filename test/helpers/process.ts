import { mkdtempSync, rmSync, readFileSync, existsSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { Subprocess } from 'bun'
import { lockDataDir } from '../../src/datadir/lock.ts'
import { writeRunInfo } from '../../src/datadir/runInfo.ts'

/** The repository root. */
export const ROOT = resolve(import.meta.dir, '../..')
/** The example plugins (apply-counter among them), loaded with --plugins. */
export const EXAMPLES = join(ROOT, 'examples')

/**
 * The tests publish test.* types that no local plugin handles, as a node does in a network whose handlers
 * live on other nodes (the refusal of unknown types is tested by unsetting this).
 */
export const TEST_ENV = { CAIRN_ALLOW_UNKNOWN_TYPES: 'true' }

/** The i-th of a series of distinct workspace.invited publish bodies. */
export const invite = (i: number): Record<string, unknown> => ({
  type: 'workspace.invited',
  payload: { workspace_id: `w${i % 7}`, invitee: `user${i}@example.com`, role: 'member', invited_by: 'admin@example.com' }
})

/** The built binary; `npm test` builds it first. */
const BINARY = join(ROOT, 'dist', 'cairn')

/** How to start cairn: the compiled binary, the source under Bun, or the source under Deno. */
export type Runtime = 'binary' | 'bun' | 'deno'

/** @returns the command line that runs cairn with `args` */
export function cairnCommand(runtime: Runtime, args: string[]): string[] {
  if (runtime === 'binary') {
    if (!existsSync(BINARY)) throw new Error(`${BINARY} is missing: run npm run build first (npm test does)`)
    return [BINARY, ...args]
  }
  if (runtime === 'deno') return [join(ROOT, 'node_modules', '.bin', 'deno'), 'run', '-A', join(ROOT, 'mod.ts'), ...args]
  return [process.execPath, join(ROOT, 'mod.ts'), ...args]
}

/** Runs cairn to completion. */
export async function cairn(
  args: string[],
  options: { runtime?: Runtime; env?: Record<string, string>; cwd?: string; stdin?: string } = {}
): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn(cairnCommand(options.runtime ?? 'binary', args), {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, CAIRN_DATA: '', ...TEST_ENV, ...options.env },
    stdin: options.stdin != null ? new TextEncoder().encode(options.stdin) : 'ignore',
    stdout: 'pipe',
    stderr: 'pipe'
  })
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  return { code, stdout, stderr }
}

/**
 * Runs cairn to completion in a mount namespace of its own, after `setup`, a shell script run there first (a
 * read-only bind mount, a small tmpfs filled up), so that the mounts end with it. Needs root and util-linux's unshare.
 *
 * @returns what cairn printed, or undefined when this machine cannot (no unshare, or `setup` failed: no root)
 */
export async function cairnInMountNamespace(setup: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string } | undefined> {
  let proc: Subprocess<'ignore', 'pipe', 'pipe'>
  try {
    proc = Bun.spawn(['unshare', '-m', 'sh', '-c', `{ ${setup}; } > /dev/null 2>&1 || exit 99; exec "$0" "$@"`, ...cairnCommand('binary', args)], {
      cwd: ROOT,
      env: { ...process.env, CAIRN_DATA: '', ...TEST_ENV, ...env },
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 'pipe'
    })
  } catch {
    return undefined
  }
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  if (code === 99 || (code !== 0 && stderr.startsWith('unshare:'))) return undefined
  return { code, stdout, stderr }
}

/** @returns a shell command that bind-mounts `dir` on itself read-only, as a read-only volume is */
export function readOnlyMount(dir: string): string {
  return `mount --bind '${dir}' '${dir}' && mount -o remount,bind,ro '${dir}' '${dir}'`
}

/** Creates a data directory with `cairn init`: a new network, or one joining `swarmKey` (a swarm.key file). */
export async function initDir(parent: string, name: string, swarmKey?: string): Promise<string> {
  const dir = join(parent, name)
  const r = await cairn(['init', '--data', dir, ...(swarmKey != null ? ['--swarm-key', swarmKey] : ['--new-network'])])
  if (r.code !== 0) throw new Error(r.stderr)
  return dir
}

/** @returns a data directory `name` under `parent` that joins the network of `founder` (its swarm key) with `owner` as founding owner */
export async function joiner(parent: string, name: string, founder: string, owner: string): Promise<string> {
  const dir = join(parent, name)
  const r = await cairn(['init', '--data', dir, '--swarm-key', join(founder, 'swarm.key'), '--owner', owner])
  if (r.code !== 0) throw new Error(r.stderr)
  return dir
}

/** A temporary directory removed at dispose. */
export function tempDir(prefix = 'cairn-test-'): { path: string; [Symbol.dispose]: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix))
  return {
    path,
    [Symbol.dispose]: () => {
      rmSync(path, { recursive: true, force: true })
    }
  }
}

/** A live process unrelated to cairn (a `sleep`), for a lock naming a pid that lives; killed when disposed. */
export function liveStranger(): { pid: number; [Symbol.asyncDispose]: () => Promise<void> } {
  const proc = Bun.spawn(['sleep', '600'], { stdin: 'ignore', stdout: 'ignore', stderr: 'ignore' })
  return {
    pid: proc.pid,
    [Symbol.asyncDispose]: async () => {
      proc.kill()
      await proc.exited
    }
  }
}

/**
 * Makes a stopped node's directory look held by a node in another container or on another host sharing it: this
 * process holds the directory's lock, as that node does there, and run.lock and node.json name a live process here
 * of another start time, at an endpoint (127.0.0.1:1) that does not answer.
 *
 * @returns that process's pid, and the start record this process's lock wrote (run.lock.start, for a test that makes
 * this process the holder again); disposing it releases the lock and ends the process
 */
export function heldElsewhere(dir: string, peerId: string): { pid: number; ownStart: string; [Symbol.asyncDispose]: () => Promise<void> } {
  const release = lockDataDir(dir)
  const other = liveStranger()
  const lock = join(dir, 'run.lock')
  const own = readFileSync(`${lock}.start`, 'utf8')
  writeFileSync(lock, String(other.pid))
  writeFileSync(`${lock}.start`, JSON.stringify({ pid: other.pid, start: `1@${JSON.parse(own).start.split('@')[1]}` }))
  writeRunInfo(dir, { peer_id: peerId, version: '0.0.1', addrs: [], http: '127.0.0.1:1', started_at: new Date().toISOString(), pid: other.pid })
  return {
    pid: other.pid,
    ownStart: own,
    [Symbol.asyncDispose]: async () => {
      release()
      await other[Symbol.asyncDispose]()
    }
  }
}

/** @returns the pid of a process that has exited, for a lock a crashed node left */
export async function deadPid(): Promise<number> {
  const dead = Bun.spawn(['true'])
  await dead.exited
  return dead.pid
}

/**
 * Reads `stream` as text to its end, in the background.
 *
 * @returns the text read so far, and `done`, which settles once the stream ended
 */
export function collectText(stream: ReadableStream<Uint8Array>): { text: () => string; done: Promise<void> } {
  let text = ''
  const done = (async () => {
    const decoder = new TextDecoder()
    const reader = stream.getReader()
    for (;;) {
      const { value, done } = await reader.read()
      if (done) break
      text += decoder.decode(value, { stream: true })
    }
  })()
  return { text: () => text, done }
}

/**
 * Polls `check` until it returns a value other than undefined/false, or the deadline passes.
 *
 * @throws Error with `what` when the deadline passes
 */
export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 30_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const r = await check()
      if (r !== undefined && r !== false) return r
    } catch (err) {
      last = err
    }
    await Bun.sleep(everyMs)
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}${last != null ? `: ${(last as Error).message}` : ''}`)
}

/**
 * @returns the lines of a node's stderr that are a crash or an unhandled rejection: anything outside the
 * JSON log lines that looks like a runtime error dump (`error: `, `Unhandled`, a stack frame), and JSON
 * lines with reason `unhandled_rejection`. One exception, until the plugin host handles it: the plugin
 * round's unhandled SQLITE_FULL on a disk that a fault test filled on purpose.
 */
export function crashLines(logs: string): string[] {
  return logs.split('\n').filter((line) => {
    const t = line.trim()
    if (t.startsWith('{')) {
      try {
        const entry = JSON.parse(t) as { reason?: unknown; msg?: unknown }
        return entry.reason === 'unhandled_rejection'
      } catch {}
    }
    return /(^|\s)error: |Unhandled|^at (async )?\S|PublishError/.test(t)
  })
}

/** A running `cairn run` process on a fresh data directory. */
export class NodeProcess {
  readonly dir: string
  readonly runtime: Runtime
  proc?: Subprocess<'ignore', 'pipe', 'pipe'>
  peerId = ''
  http = ''
  addrs: string[] = []
  logs = ''
  /** resolves once the running process's stderr has been read to its end into `logs` */
  private logsRead: Promise<void> = Promise.resolve()

  constructor(dir: string, runtime: Runtime = 'binary') {
    this.dir = dir
    this.runtime = runtime
  }

  /** Creates the data directory (a new network, or joining `network`'s swarm key, with the network's `owners`). */
  static async init(parent: string, name: string, options: { network?: NodeProcess; swarmKeyFile?: string; runtime?: Runtime; owners?: string[] } = {}): Promise<NodeProcess> {
    const node = new NodeProcess(join(parent, name), options.runtime)
    const keyFile = options.swarmKeyFile ?? (options.network != null ? join(options.network.dir, 'swarm.key') : undefined)
    const owners = (options.owners ?? []).flatMap((o) => ['--owner', o])
    const r = await cairn(['init', '--data', node.dir, ...(keyFile != null ? ['--swarm-key', keyFile] : ['--new-network']), ...owners], { runtime: options.runtime })
    if (r.code !== 0) throw new Error(`cairn init failed: ${r.stderr}`)
    node.peerId = r.stdout.trim()
    return node
  }

  /** Starts `cairn run` on loopback with free ports and waits until node.json names this process. */
  async start(args: string[] = [], env: Record<string, string> = {}): Promise<this> {
    const proc = Bun.spawn(
      cairnCommand(this.runtime, [
        'run',
        '--data',
        this.dir,
        '--listen',
        '/ip4/127.0.0.1/tcp/0',
        '--http',
        '127.0.0.1:0',
        '--announce-interval',
        '1s',
        '--log-format',
        'json',
        '--log-level',
        'debug',
        ...args
      ]),
      {
        cwd: ROOT,
        env: { ...process.env, CAIRN_DATA: '', ...TEST_ENV, ...env },
        stdin: 'ignore',
        stdout: 'pipe',
        stderr: 'pipe'
      }
    )
    this.proc = proc
    this.logsRead = (async () => {
      const dec = new TextDecoder()
      const reader = proc.stderr.getReader()
      for (;;) {
        const { value, done } = await reader.read()
        if (done) break
        this.logs += dec.decode(value, { stream: true })
      }
    })()
    await waitFor(
      `node ${this.dir} to start (logs: ${this.logs.slice(-2000)})`,
      () => {
        if (proc.exitCode != null) throw new Error(`cairn run exited with ${proc.exitCode}: ${this.logs}`)
        try {
          const info = JSON.parse(readFileSync(join(this.dir, 'node.json'), 'utf8'))
          if (info.pid !== proc.pid) return undefined
          this.http = info.http
          this.addrs = info.addrs
          return true
        } catch {
          return undefined
        }
      },
      60_000
    )
    return this
  }

  get token(): string {
    return readFileSync(join(this.dir, 'api.token'), 'utf8').trim()
  }

  /** Publishes through the loopback endpoint. */
  async publish(body: Record<string, unknown>): Promise<{ event_id: string; seq: number; cid: string; replayed: boolean }> {
    const res = await fetch(`http://${this.http}/v1/events`, { method: 'POST', headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
    if (res.status !== 201 && res.status !== 200) throw new Error(`publish failed: ${res.status} ${await res.text()}`)
    return (await res.json()) as { event_id: string; seq: number; cid: string; replayed: boolean }
  }

  async status(): Promise<any> {
    return await (await fetch(`http://${this.http}/status`)).json()
  }

  /** Sends a signal and waits for the exit code. @throws when the node's output holds a crash or an unhandled rejection */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number> {
    const proc = this.proc
    if (proc == null || proc.exitCode != null) return proc?.exitCode ?? 0
    proc.kill(signal)
    const code = await proc.exited
    await this.logsRead
    this.proc = undefined
    this.assertNoCrash()
    return code
  }

  /** @throws when the node's output so far holds a crash or an unhandled rejection (see crashLines) */
  assertNoCrash(): void {
    const bad = crashLines(this.logs)
    if (bad.length > 0) throw new Error(`node ${this.dir} printed a crash or an unhandled rejection:\n${bad.slice(0, 20).join('\n')}`)
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.proc != null && this.proc.exitCode == null) {
      this.proc.kill('SIGKILL')
      await this.proc.exited
    }
    await this.logsRead
    this.assertNoCrash()
  }
}

/**
 * Publishes `n` events through a node's endpoint with up to `concurrency` under way at once.
 *
 * @returns each publish's result, in the order of `make`'s index
 */
export async function publishMany(node: NodeProcess, n: number, make: (i: number) => Record<string, unknown>, concurrency = 32): Promise<Array<{ event_id: string; seq: number; cid: string }>> {
  const results = new Array<{ event_id: string; seq: number; cid: string }>(n)
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n) {
        const i = next++
        results[i] = await node.publish(make(i))
      }
    })
  )
  return results
}
