/**
 * What `cairn plugins rebuild` costs a running node: an in-process node whose events table holds N
 * `workspace.invited` events (applied by the built-in workspace-access plugin) rebuilds that plugin while this
 * process publishes an event every 20 ms. Prints the rebuild's time, the longest event-loop stall and the slowest
 * publish while it ran, and how long its swap held cairn.db (main's one-transaction rebuild holds it throughout:
 * about its longest stall).
 *
 *   bun bench/rebuildLive.ts                          # N=100000, this checkout
 *   N=20000 CAIRN_ROOT=/work/main bun bench/rebuildLive.ts   # another checkout's src/ (before/after)
 */
import { join, resolve } from 'node:path'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { uuidv7 } from 'uuidv7'

const root = resolve(process.env.CAIRN_ROOT ?? join(import.meta.dir, '..'))
const N = Number(process.env.N ?? 100_000)
const { initDataDir } = await import(join(root, 'src/datadir/init.ts'))
const { CairnNode } = await import(join(root, 'src/node/node.ts'))
const { RUN_SETTINGS, toNodeConfig } = await import(join(root, 'src/config/catalog.ts'))
const { resolveSettings } = await import(join(root, 'src/config/resolve.ts'))
const { Store } = await import(join(root, 'src/store/store.ts'))
const { requestRebuild } = await import(join(root, 'src/plugins/rebuild.ts'))
const { BUILTIN_PLUGINS } = await import(join(root, 'plugins/mod.ts'))

const tmp = mkdtempSync(join(tmpdir(), 'cairn-rebuild-bench-'))
try {
  const dir = join(tmp, 'n')
  await initDataDir(dir, { newNetwork: true })
  const store = await Store.open(join(dir, 'cairn.db'))
  const producer = '12D3KooWA1111111111111111111111111111111111111111111'
  store.transaction(() => {
    for (let i = 1; i <= N; i++) {
      const payload = { workspace_id: `w${i % 100}`, invitee: `u${i}@example.com`, role: 'member', invited_by: 'a@example.com' }
      store.events.insert(
        { event_id: uuidv7(), type: 'workspace.invited', version: 1, producer, seq: i, hlc: `${1_800_000_000_000 + i}-0000`, occurred_at: new Date().toISOString(), payload },
        'bafy',
        Date.now()
      )
    }
  })
  store.close()
  const lines: Array<Record<string, unknown>> = []
  const log = { debug() {}, warn() {}, error() {}, info: (msg: string, f: Record<string, unknown> = {}) => lines.push({ msg, ...f }), child: () => log }
  const config = toNodeConfig(resolveSettings(RUN_SETTINGS, { data: dir, listen: ['/ip4/127.0.0.1/tcp/0'], http: '127.0.0.1:0', 'announce-interval': '1h', 'allow-unknown-types': true }, {}, {}))
  const node = new CairnNode(config, { log, plugins: BUILTIN_PLUGINS })
  await node.start()
  await node.plugins.drain()

  let rebuilding = true
  let maxGap = 0
  let last = performance.now()
  const tick = (): void => {
    const now = performance.now()
    maxGap = Math.max(maxGap, now - last)
    last = now
    if (rebuilding) setTimeout(tick, 1)
  }
  const publishes: number[] = []
  const publisher = (async () => {
    for (let i = 0; rebuilding; i++) {
      const t = performance.now()
      await node.publish({ type: 'workspace.invited', payload: { workspace_id: 'live', invitee: `live${i}@example.com`, role: 'member', invited_by: 'a@example.com' } })
      publishes.push(performance.now() - t)
      await new Promise((r) => setTimeout(r, 20))
    }
  })()
  const done = new Promise<void>((r) => node.events.addEventListener('plugin:rebuilt', () => r(), { once: true }))
  const started = performance.now()
  setTimeout(tick, 1)
  requestRebuild(node.store, 'workspace-access')
  node.plugins.changedElsewhere()
  await done
  const rebuildMs = performance.now() - started
  rebuilding = false
  await publisher
  await node.plugins.drain()
  const rebuilt = lines.find((l) => l.reason === 'plugin_rebuilt') ?? {}
  await node.stop()
  publishes.sort((a, b) => a - b)
  console.log(
    JSON.stringify({
      root,
      events: N,
      rebuild_ms: Math.round(rebuildMs),
      max_event_loop_stall_ms: Math.round(maxGap),
      publishes: publishes.length,
      publish_p50_ms: Math.round(publishes[Math.floor(publishes.length / 2)] ?? 0),
      publish_max_ms: Math.round(publishes.at(-1) ?? 0),
      swap_ms: rebuilt.swap_ms ?? null
    })
  )
} finally {
  rmSync(tmp, { recursive: true, force: true })
}
