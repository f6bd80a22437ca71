/**
 * How long `await fetch('/v1/stream')` takes to resolve on an idle node, from Node, Bun and Deno (issue
 * 23's target: within 100 ms): the compiled binary on a fresh data directory, N fetches per runtime, each
 * in a fresh process, timed inside the process from the call to the resolved response.
 *
 * Usage: bun build.ts && bun bench/stream-connect.ts   (N=20)
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { startLoneNode } from './nodes.ts'

const ROOT = resolve(import.meta.dir, '..')
const N = Number(process.env.N ?? 20)
const dir = mkdtempSync(join(tmpdir(), 'cairn-stream-connect-'))
const data = join(dir, 'n')
const SCRIPT = `
const [url, token] = typeof Deno !== 'undefined' ? Deno.args : process.argv.slice(2)
const t0 = performance.now()
const res = await fetch(url, { headers: { authorization: 'Bearer ' + token } })
console.log(performance.now() - t0)
await res.body.cancel()
typeof Deno !== 'undefined' ? Deno.exit(0) : process.exit(0)
`
const script = join(dir, 'connect.mjs')
writeFileSync(script, SCRIPT)

const node = await startLoneNode(data)
try {
  const { http, token } = node
  const runtimes: Record<string, string[]> = { node: ['node', script], bun: [process.execPath, script], deno: [join(ROOT, 'node_modules/.bin/deno'), 'run', '-A', script] }
  for (const [name, cmd] of Object.entries(runtimes)) {
    const times: number[] = []
    for (let i = 0; i < N; i++) {
      const p = Bun.spawnSync([...cmd, `http://${http}/v1/stream`, token], { timeout: 30_000 })
      const ms = Number(p.stdout.toString().trim())
      if (!Number.isFinite(ms) || p.stdout.toString().trim() === '') throw new Error(`${name}: ${p.stderr.toString()}`)
      times.push(ms)
    }
    times.sort((a, b) => a - b)
    console.log(`${name.padEnd(5)} fetch('/v1/stream') resolved: median ${times[Math.floor(N / 2)].toFixed(1)} ms, max ${times[N - 1].toFixed(1)} ms (N=${N})`)
  }
} finally {
  await node.stop()
  rmSync(dir, { recursive: true, force: true })
}
