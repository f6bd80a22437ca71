/**
 * The two systems under benchmark, behind one interface: a node process that publishes over loopback
 * HTTP and reports every event it has applied, with the time the driver saw it.
 * cairn runs as the compiled binary (`dist/cairn`) and reports through its live stream (`/v1/stream`);
 * OrbitDB runs as `bench/orbitdb-node.ts` under Bun and reports on stdout.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { Subprocess } from 'bun'
import { readSse } from '../src/client/sse.ts'

export const ROOT = resolve(import.meta.dir, '..')
/** the cairn binary the bench runs: BIN=path for another build (copy dist/cairn away first), to compare */
const BINARY = process.env.BIN ?? join(ROOT, 'dist', 'cairn')
const BUN = process.execPath

/** Payloads of PAYLOAD_BYTES (100 unless set) bytes of JSON: an id the driver matches on, padded. */
const PAYLOAD_BYTES = Number(process.env.PAYLOAD_BYTES ?? 100)
export function payload(id: string): { id: string; pad: string } {
  return { id, pad: 'x'.repeat(Math.max(0, PAYLOAD_BYTES - JSON.stringify({ id, pad: '' }).length)) }
}

/**
 * Publishes `count` events on `node` at `perSecond`, one per request, not waiting for each answer (the load
 * workloads); `id` names the i-th event, `answered` records when each answer came.
 *
 * @returns the send time per id, once every request is answered
 */
export async function publishAtRate(node: BenchNode, count: number, perSecond: number, options: { id: (i: number) => string; answered?: Map<string, number> }): Promise<Map<string, number>> {
  const sent = new Map<string, number>()
  const pending: Array<Promise<void>> = []
  const start = performance.now()
  for (let i = 0; i < count; i++) {
    const wait = start + (i * 1000) / perSecond - performance.now()
    if (wait > 1) await Bun.sleep(wait)
    const id = options.id(i)
    sent.set(id, performance.now())
    pending.push(node.publish(id).then(() => void options.answered?.set(id, performance.now())))
  }
  await Promise.all(pending)
  return sent
}

/** @returns the q-quantile of `xs` (nearest rank) */
export function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]
}

/** Reads a process's peak resident set (VmHWM) in MiB, and its CPU seconds so far. */
export function procStats(pid: number): { peakRssMiB: number; cpuSeconds: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const hwm = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { peakRssMiB: hwm, cpuSeconds: (Number(fields[11]) + Number(fields[12])) / 100 }
  } catch {
    return { peakRssMiB: 0, cpuSeconds: 0 }
  }
}

export abstract class BenchNode {
  readonly dir: string
  proc?: Subprocess<'ignore', 'pipe', 'pipe'>
  http = ''
  addrs: string[] = []
  /** event id → when the driver saw it applied here (performance.now()) */
  readonly applied = new Map<string, number>()
  /** peak RSS over every incarnation of this node */
  peakRssMiB = 0
  /** what the process wrote to stderr; whole once stop() has returned */
  stderr = ''
  private stderrRead: Promise<void> = Promise.resolve()
  onApplied?: (id: string, at: number) => void
  /** events reported applied more than once */
  duplicates = 0

  constructor(dir: string) {
    this.dir = dir
  }

  abstract start(bootstrap: string[]): Promise<void>

  /** the gossip hints received so far, where the system counts them */
  gossipHints?: () => Promise<{ received: number; duplicates: number }>
  abstract publish(id: string): Promise<void>
  /** publishes several events in one request, where the system has such a call */
  publishBatch?: (ids: string[]) => Promise<void>
  /** publishes events over one streaming request, each acknowledged once durable, where the system has one */
  publishStream?: (ids: string[]) => Promise<void>

  protected record(id: string): void {
    if (this.applied.has(id)) {
      this.duplicates++
      return
    }
    const at = performance.now()
    this.applied.set(id, at)
    this.onApplied?.(id, at)
  }

  protected collectStderr(proc: Subprocess<'ignore', 'pipe', 'pipe'>): void {
    this.stderrRead = new Response(proc.stderr).text().then((t) => {
      this.stderr += t
    })
  }

  stats(): { peakRssMiB: number; cpuSeconds: number } {
    const s = this.proc != null ? procStats(this.proc.pid) : { peakRssMiB: 0, cpuSeconds: 0 }
    this.peakRssMiB = Math.max(this.peakRssMiB, s.peakRssMiB)
    return s
  }

  async stop(): Promise<void> {
    const proc = this.proc
    if (proc == null) return
    this.stats()
    proc.kill('SIGTERM')
    const timer = setTimeout(() => {
      proc.kill('SIGKILL')
    }, 10_000)
    await proc.exited
    clearTimeout(timer)
    await this.stderrRead
    this.proc = undefined
  }
}

async function post(url: string, body: unknown, token?: string, headers: Record<string, string> = {}): Promise<void> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token != null ? { authorization: `Bearer ${token}` } : {}), ...headers },
    body: JSON.stringify(body)
  })
  if (!res.ok) throw new Error(`publish failed: ${res.status} ${await res.text()}`)
  await res.arrayBuffer()
}

export class CairnNode extends BenchNode {
  private token = ''
  private cursor = '0'
  private streamAbort?: AbortController
  /** more `cairn run` flags */
  extraArgs: string[] = []
  /** how to run cairn (default: the compiled binary); for profiling, e.g. [bun, '--cpu-prof-md', 'mod.ts'] */
  command: string[] = [BINARY]
  /** more environment for the process (Bun.spawn does not see changes to process.env) */
  env: Record<string, string> = {}

  static async create(dir: string, swarmKey?: string): Promise<CairnNode> {
    const r = Bun.spawnSync([BINARY, 'init', '--data', dir, ...(swarmKey != null ? ['--swarm-key', swarmKey] : ['--new-network'])], { stderr: 'pipe' })
    if (r.exitCode !== 0) throw new Error(`cairn init: ${r.stderr.toString()}`)
    return new CairnNode(dir)
  }

  get swarmKey(): string {
    return join(this.dir, 'swarm.key')
  }

  async start(bootstrap: string[]): Promise<void> {
    const proc = Bun.spawn(
      [
        ...this.command,
        'run',
        '--data',
        this.dir,
        '--listen',
        '/ip4/127.0.0.1/tcp/0',
        '--http',
        '127.0.0.1:0',
        '--log-format',
        'json',
        '--log-level',
        'warn',
        ...this.extraArgs,
        ...bootstrap.flatMap((b) => ['--bootstrap', b])
      ],
      { stdin: 'ignore', stdout: 'pipe', stderr: 'pipe', env: { ...process.env, CAIRN_ALLOW_UNKNOWN_TYPES: 'true', ...this.env } }
    )
    this.proc = proc
    this.collectStderr(proc)
    const deadline = Date.now() + 60_000
    for (;;) {
      if (proc.exitCode != null) throw new Error(`cairn run exited: ${this.stderr}`)
      if (Date.now() > deadline) throw new Error('cairn run did not start in 60 s')
      try {
        const info = JSON.parse(readFileSync(join(this.dir, 'node.json'), 'utf8'))
        if (info.pid === proc.pid) {
          this.http = info.http
          this.addrs = info.addrs
          break
        }
      } catch {}
      await Bun.sleep(10)
    }
    this.token = readFileSync(join(this.dir, 'api.token'), 'utf8').trim()
    // Not awaited: the stream's headers come with its first event, and it resumes from the cursor anyway.
    void this.follow().catch((err: Error) => {
      this.stderr += `stream: ${err.message}\n`
    })
  }

  /** Follows `/v1/stream` from the last cursor seen, so a restart resumes with no gap and no repeat. */
  private async follow(): Promise<void> {
    const abort = new AbortController()
    this.streamAbort = abort
    const res = await fetch(`http://${this.http}/v1/stream`, { headers: { authorization: `Bearer ${this.token}`, 'last-event-id': this.cursor }, signal: abort.signal })
    if (res.body == null) throw new Error('no stream body')
    const body = res.body
    void (async () => {
      for await (const m of readSse(body)) {
        if (m.event != null) continue
        if (m.id != null) this.cursor = m.id
        this.record((JSON.parse(m.data) as { payload: { id: string } }).payload.id)
      }
    })().catch(() => {})
  }

  async publish(id: string): Promise<void> {
    await post(`http://${this.http}/v1/events`, { type: 'bench.event', payload: payload(id) }, this.token)
  }

  /**
   * Publishes as docs/api.md tells a backend to: with an Idempotency-Key, retrying a request whose connection
   * broke (a keep-alive connection the server closed as it was reused) with the same key, up to `attempts`.
   *
   * @returns how many retries it took
   */
  async publishRetrying(id: string, attempts = 3): Promise<number> {
    for (let retry = 0; ; retry++) {
      try {
        await post(`http://${this.http}/v1/events`, { type: 'bench.event', payload: payload(id) }, this.token, { 'idempotency-key': id })
        return retry
      } catch (err) {
        // An HTTP error answers the same again; only a broken request is retried.
        if (retry + 1 >= attempts || (err as Error).message.startsWith('publish failed:')) throw err
      }
    }
  }

  /** @returns the gossip hints this node has received so far, every copy, and the duplicates among them */
  override gossipHints = async (): Promise<{ received: number; duplicates: number }> => {
    const text = await (await fetch(`http://${this.http}/metrics`)).text()
    const read = (name: string): number => Number(new RegExp(`^${name}\\{topic="hints"\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0)
    return { received: read('cairn_gossip_received_total'), duplicates: read('cairn_gossip_duplicates_total') }
  }

  /** Publishes several events in one request: one commit (an array body). */
  override publishBatch = async (ids: string[]): Promise<void> => {
    await post(
      `http://${this.http}/v1/events`,
      ids.map((id) => ({ type: 'bench.event', payload: payload(id) })),
      this.token
    )
  }

  /** Publishes events over one streaming publish (NDJSON in, one acknowledgement per line out), reading acks as it sends. */
  override publishStream = async (ids: string[]): Promise<void> => {
    const encoder = new TextEncoder()
    let next = 0
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (next === ids.length) {
          c.close()
          return
        }
        // a few hundred lines a chunk, as a backend writing to a socket would
        const end = Math.min(ids.length, next + 256)
        let text = ''
        for (; next < end; next++) text += `${JSON.stringify({ type: 'bench.event', payload: payload(ids[next]) })}\n`
        c.enqueue(encoder.encode(text))
      }
    })
    const res = await fetch(`http://${this.http}/v1/events/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson', authorization: `Bearer ${this.token}` },
      body,
      duplex: 'half'
    } as RequestInit)
    if (res.status !== 200) throw new Error(`publish stream failed: ${res.status} ${await res.text()}`)
    const decoder = new TextDecoder()
    let acks = 0
    let rest = ''
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      rest += decoder.decode(chunk, { stream: true })
      const lines = rest.split('\n')
      rest = lines.pop()!
      for (const line of lines) {
        if (line.includes('"error"')) throw new Error(`publish stream: ${line}`)
        acks++
      }
    }
    if (acks !== ids.length) throw new Error(`publish stream: ${acks} acknowledgements for ${ids.length} events`)
  }

  override async stop(): Promise<void> {
    this.streamAbort?.abort()
    await super.stop()
  }
}

export class OrbitNode extends BenchNode {
  readonly swarmKey: string
  address?: string

  constructor(dir: string, swarmKey: string, address?: string) {
    super(dir)
    this.swarmKey = swarmKey
    this.address = address
  }

  static create(dir: string, swarmKey?: string, address?: string): OrbitNode {
    mkdirSync(dir, { recursive: true })
    let key = swarmKey
    if (key == null) {
      key = join(dir, 'swarm.key')
      const hex = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('hex')
      writeFileSync(key, `/key/swarm/psk/1.0.0/\n/base16/\n${hex}\n`)
    }
    return new OrbitNode(dir, key, address)
  }

  async start(bootstrap: string[]): Promise<void> {
    const proc = Bun.spawn(
      [
        BUN,
        join(ROOT, 'bench', 'orbitdb-node.ts'),
        '--dir',
        this.dir,
        '--swarm-key',
        this.swarmKey,
        ...(this.address != null ? ['--address', this.address] : []),
        ...bootstrap.flatMap((b) => ['--bootstrap', b])
      ],
      { cwd: join(ROOT, 'bench'), stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' }
    )
    this.proc = proc
    this.collectStderr(proc)
    const { promise: isReady, resolve: ready, reject: failed } = Promise.withResolvers<void>()
    void (async () => {
      const dec = new TextDecoder()
      let buf = ''
      const reader = proc.stdout.getReader()
      for (;;) {
        const { value, done } = await reader.read()
        if (done) break
        buf += dec.decode(value, { stream: true })
        for (let end = buf.indexOf('\n'); end >= 0; end = buf.indexOf('\n')) {
          const line = JSON.parse(buf.slice(0, end))
          buf = buf.slice(end + 1)
          if (line.applied != null) this.record(line.applied)
          else if (line.ready != null) {
            this.http = line.ready.http
            this.addrs = line.ready.addrs
            this.address = line.ready.address
            ready()
          }
        }
      }
      failed(new Error(`orbitdb node exited: ${this.stderr}`))
    })()
    await isReady
  }

  async publish(id: string): Promise<void> {
    await post(`http://${this.http}/v1/events`, { payload: payload(id) })
  }
}

export type SystemName = 'cairn' | 'orbitdb'

/** Creates node `name` of `system` in `parent`; later nodes join the first one's network (and OrbitDB database). */
export async function createNode(system: SystemName, parent: string, name: string, first?: BenchNode): Promise<BenchNode> {
  const dir = join(parent, name)
  if (system === 'cairn') return await CairnNode.create(dir, first != null ? (first as CairnNode).swarmKey : undefined)
  return OrbitNode.create(dir, first != null ? (first as OrbitNode).swarmKey : undefined, first != null ? (first as OrbitNode).address : undefined)
}

/**
 * Starts `count` cairn nodes of one network in `parent`, each bootstrapping to the one before (a chain;
 * with two, simply B to A). Nodes already started are stopped again when one fails to start.
 */
export async function startCairnChain(parent: string, count: number, options: { command?: string[]; env?: Record<string, string> } = {}): Promise<CairnNode[]> {
  const nodes: CairnNode[] = []
  try {
    for (let i = 0; i < count; i++) {
      const node = await CairnNode.create(join(parent, `n${i}`), nodes[0]?.swarmKey)
      if (options.command != null) node.command = options.command
      if (options.env != null) node.env = options.env
      nodes.push(node)
      await node.start(i === 0 ? [] : [nodes[i - 1].addrs[0]])
    }
  } catch (err) {
    for (const n of nodes) await n.stop()
    throw err
  }
  return nodes
}

/** A stage mark that a node started with `CAIRN_TRACE=1` wrote (src/log/trace.ts). */
export interface TraceMark {
  stage: string
  seq: number | undefined
  at: number
}

/** @returns the stage marks in a node's stderr, in order */
export function traceMarks(stderr: string): TraceMark[] {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('TRACE '))
    .map((l) => {
      const [, stage, seq, at] = l.split(' ')
      return { stage, seq: seq === '' ? undefined : Number(seq), at: Number(at) }
    })
}

/** @returns the wall clock in ms with sub-millisecond precision: the clock trace marks use */
export const epochNow = (): number => performance.timeOrigin + performance.now()

/** A lone cairn node (a fresh network, no peers) for the benches that time one node's endpoint. */
export interface LoneNode {
  http: string
  token: string
  stop(): Promise<void>
}

/** Initialises `data` as a new network and runs the binary on it with its HTTP endpoint on a free port. */
export async function startLoneNode(data: string): Promise<LoneNode> {
  const init = Bun.spawnSync([BINARY, 'init', '--data', data, '--new-network'])
  if (init.exitCode !== 0) throw new Error(init.stderr.toString())
  const proc = Bun.spawn([BINARY, 'run', '--data', data, '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'], { stdout: 'ignore', stderr: 'ignore' })
  const stop = async (): Promise<void> => {
    proc.kill('SIGTERM')
    await proc.exited
  }
  for (let i = 0; i < 600; i++) {
    try {
      const info = JSON.parse(readFileSync(join(data, 'node.json'), 'utf8')) as { pid: number; http: string }
      if (info.pid === proc.pid) return { http: info.http, token: readFileSync(join(data, 'api.token'), 'utf8').trim(), stop }
    } catch {}
    await Bun.sleep(100)
  }
  await stop()
  throw new Error('the node did not start in 60 s')
}
