/**
 * Whether a quiet stream stays open (issue 23: a consumer holding /v1/stream for 10 minutes on a quiet node
 * is not cut off): the compiled binary with default settings, a Node 20 `fetch` reader and an `eventsource`
 * client on /v1/stream for MINUTES, counting heartbeats, reconnections and errors.
 *
 * Usage: bun build.ts && bun bench/stream-hold.ts   (MINUTES=10)
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { startLoneNode } from './nodes.ts'

const ROOT = resolve(import.meta.dir, '..')
const MINUTES = Number(process.env.MINUTES ?? 10)
const dir = mkdtempSync(join(tmpdir(), 'cairn-stream-hold-'))
const data = join(dir, 'n')
const script = join(dir, 'hold.mjs')
writeFileSync(
  script,
  `
import { EventSource } from ${JSON.stringify(join(ROOT, 'node_modules/eventsource/dist/index.js'))}
const [url, token, ms] = process.argv.slice(2)
const auth = { authorization: 'Bearer ' + token }
const res = await fetch(url, { headers: auth })
let heartbeats = 0
let fetchState = 'open'
;(async () => {
  const reader = res.body.getReader()
  try {
    for (;;) {
      const { value, done } = await reader.read()
      if (done) { fetchState = 'ended'; break }
      heartbeats += new TextDecoder().decode(value).split(': heartbeat').length - 1
    }
  } catch (e) { fetchState = 'error: ' + e.message }
})()
let opens = 0
let errors = 0
const es = new EventSource(url, { fetch: (i, init) => fetch(i, { ...init, headers: { ...init.headers, ...auth } }) })
es.onopen = () => opens++
es.onerror = () => errors++
setTimeout(() => {
  console.log(JSON.stringify({ fetch: fetchState, heartbeats, eventsource: { opens, errors, readyState: es.readyState } }))
  process.exit(0)
}, Number(ms))
`
)
const node = await startLoneNode(data)
try {
  const { http, token } = node
  const hold = Bun.spawn(['node', script, `http://${http}/v1/stream`, token, String(MINUTES * 60_000)], { stdout: 'pipe', stderr: 'inherit' })
  const out = (await new Response(hold.stdout).text()).trim()
  console.log(`held /v1/stream for ${MINUTES} min on a quiet node (Node ${Bun.spawnSync(['node', '--version']).stdout.toString().trim()}): ${out}`)
} finally {
  await node.stop()
  rmSync(dir, { recursive: true, force: true })
}
