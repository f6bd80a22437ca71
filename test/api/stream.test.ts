import { describe, expect, test } from 'bun:test'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { EventSource } from 'eventsource'
import { readSse, type SseMessage } from '../../src/client/sse.ts'
import { withApiNode } from '../helpers/forge.ts'
import { ROOT, waitFor } from '../helpers/process.ts'

/** Reads a stream's messages until `until` holds, then closes it. */
async function messages(res: Response, until: (seen: SseMessage[]) => boolean): Promise<SseMessage[]> {
  const seen: SseMessage[] = []
  for await (const m of readSse(res.body!)) {
    seen.push(m)
    if (until(seen)) break
  }
  return seen
}

/** A script that fetches the stream, prints the status once the response resolved, and exits. */
const FETCH_SCRIPT = `
const [url, token] = typeof Deno !== 'undefined' ? Deno.args : process.argv.slice(2)
const t0 = performance.now()
const res = await fetch(url, { headers: { authorization: 'Bearer ' + token } })
const ms = performance.now() - t0
const reader = res.body.getReader()
let text = ''
// Past the backlog to the first heartbeat: the runtime's client keeps reading a quiet stream.
while (!text.includes(': heartbeat')) text += new TextDecoder().decode((await reader.read()).value)
console.log(JSON.stringify({ status: res.status, type: res.headers.get('content-type'), ms, text }))
await reader.cancel()
typeof Deno !== 'undefined' ? Deno.exit(0) : process.exit(0)
`

describe('GET /v1/stream', () => {
  test('on an idle node the response resolves at once in Node, Bun and Deno, with retry:, ready, caught-up and then heartbeats', async () => {
    await withApiNode({ 'stream-heartbeat': '300ms' }, async (_node, base, token, dir) => {
      const script = join(dir, 'fetch-stream.mjs')
      writeFileSync(script, FETCH_SCRIPT)
      const url = `${base}/v1/stream`
      for (const cmd of [
        ['node', script, url, token],
        [process.execPath, script, url, token],
        [join(ROOT, 'node_modules', '.bin', 'deno'), 'run', '-A', script, url, token]
      ]) {
        const proc = Bun.spawn(cmd, { stdout: 'pipe', stderr: 'pipe', env: { ...process.env, NO_COLOR: '1' } })
        const killer = setTimeout(() => proc.kill(), 20_000)
        const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
        clearTimeout(killer)
        if (out.trim() === '') throw new Error(`${cmd[0]}: ${err}`)
        const r = JSON.parse(out) as { status: number; type: string; ms: number; text: string }
        console.log(`# ${cmd[0].split('/').at(-1)}: fetch('/v1/stream') resolved in ${r.ms.toFixed(1)} ms`)
        expect({ status: r.status, type: r.type, start: r.text.slice(0, 25) }).toEqual({ status: 200, type: 'text/event-stream; charset=utf-8', start: 'retry: 2000\nevent: ready\n' })
        expect(r.text).toContain('event: caught-up\ndata: {"cursor":0}\n\n: heartbeat\n\n')
      }
    })
  }, 120_000)

  test('an EventSource gets onopen, every event in onmessage with its cursor as lastEventId, and the caught-up event', async () => {
    await withApiNode({}, async (node, base, token) => {
      await node.publish({ type: 'test.es', payload: { n: 1 } })
      // The stream shows events once every plugin processed them; GET /v1/events shows the same.
      await waitFor(
        'the event processed',
        async () => ((await (await fetch(`${base}/v1/events`, { headers: { authorization: `Bearer ${token}` } })).json()) as { events: unknown[] }).events.length === 1
      )
      const es = new EventSource(`${base}/v1/stream`, {
        fetch: async (input, init) => await fetch(input, { ...init, headers: { ...init.headers, authorization: `Bearer ${token}` } })
      })
      const seen: string[] = []
      const ids: string[] = []
      es.onopen = () => seen.push('open')
      es.onmessage = (e) => {
        seen.push(`message ${JSON.parse(e.data).payload.n}`)
        ids.push(e.lastEventId)
      }
      es.addEventListener('caught-up', () => seen.push('caught-up'))
      try {
        await waitFor('the backlog', () => seen.includes('caught-up'), 10_000)
        await node.publish({ type: 'test.es', payload: { n: 2 } })
        await waitFor('the live event', () => seen.length === 4, 10_000)
      } finally {
        es.close()
      }
      expect(seen).toEqual(['open', 'message 1', 'caught-up', 'message 2'])
      expect(ids).toEqual(['1', '2'])
    })
  }, 60_000)

  test('a quiet stream is kept open by comment heartbeats every stream-heartbeat', async () => {
    await withApiNode({ 'stream-heartbeat': '200ms' }, async (_node, base, token) => {
      const res = await fetch(`${base}/v1/stream`, { headers: { authorization: `Bearer ${token}` } })
      const reader = res.body!.getReader()
      let text = ''
      while (text.split(': heartbeat\n\n').length - 1 < 5) text += new TextDecoder().decode((await reader.read()).value)
      await reader.cancel()
      // Comments only: an EventSource dispatches nothing for them.
      expect(text.split('\n\n').filter((b) => b !== '' && !b.startsWith(':') && !b.includes('event: '))).toEqual([])
    })
  }, 60_000)

  test('resumes after Last-Event-ID or ?after= with no gap or repeat; refuses malformed, unknown and stale cursors, naming the cursor space', async () => {
    await withApiNode({}, async (node, base, token) => {
      for (let n = 1; n <= 3; n++) await node.publish({ type: n === 2 ? 'test.other' : 'test.resume', payload: { n } })
      const auth = { authorization: `Bearer ${token}` }
      await waitFor('the events processed', async () => ((await (await fetch(`${base}/v1/events`, { headers: auth })).json()) as { events: unknown[] }).events.length === 3)
      const events = (ms: SseMessage[]): number[] => ms.filter((m) => m.event == null).map((m) => JSON.parse(m.data).payload.n)
      const untilCaughtUp = (ms: SseMessage[]): boolean => ms.some((m) => m.event === 'caught-up')
      const all = await fetch(`${base}/v1/stream`, { headers: auth })
      const space = all.headers.get('cairn-cursor-space')!
      const first = await messages(all, untilCaughtUp)
      expect(first.map((m) => m.event ?? `id ${m.id}`)).toEqual(['ready', 'id 1', 'id 2', 'id 3', 'caught-up'])
      expect(JSON.parse(first[0].data)).toEqual({ cursor_space: space, after: 0, heartbeat_ms: 15_000 })
      expect(events(await messages(await fetch(`${base}/v1/stream`, { headers: { ...auth, 'last-event-id': '1' } }), untilCaughtUp))).toEqual([2, 3])
      expect(events(await messages(await fetch(`${base}/v1/stream?after=2&cursor_space=${space}`, { headers: auth }), untilCaughtUp))).toEqual([3])
      const filtered = await messages(await fetch(`${base}/v1/stream?types=test.resume`, { headers: auth }), untilCaughtUp)
      expect(events(filtered)).toEqual([1, 3])

      const refused = async (path: string, headers: Record<string, string> = {}): Promise<[number, string, string[]]> => {
        const res = await fetch(`${base}${path}`, { headers: { ...auth, ...headers } })
        const body = (await res.json()) as { error: { code: string; issues: Array<{ path: string; code: string }> } }
        return [res.status, body.error.code, body.error.issues.map((i) => `${i.path} ${i.code}`)]
      }
      expect(await refused('/v1/stream?after=abc')).toEqual([400, 'invalid_request', ['after regex']])
      expect(await refused('/v1/stream', { 'last-event-id': 'abc' })).toEqual([400, 'invalid_request', ['Last-Event-ID regex']])
      expect(await refused('/v1/stream?since=1')).toEqual([400, 'invalid_request', ['since unknown_parameter']])
      expect(await refused('/v1/stream?after=1&after=2')).toEqual([400, 'invalid_request', ['after repeated_parameter']])
      expect(await refused('/v1/stream?types=Not+A+Type')).toEqual([400, 'invalid_request', ['types.0 regex']])
      expect(await refused('/v1/stream?after=4')).toEqual([409, 'cursor_beyond_end', []])
      expect(await refused(`/v1/stream?after=1&cursor_space=${'0'.repeat(32)}`)).toEqual([409, 'cursor_space_mismatch', []])
      // Rows deleted by retention leave the cursors handed out valid: resuming after the last one waits for the next event.
      expect(node.store.events.deleteProcessedBefore(Date.now() + 1)).toBe(3)
      const afterRetention = await fetch(`${base}/v1/stream?after=3`, { headers: auth })
      expect(events(await messages(afterRetention, untilCaughtUp))).toEqual([])
      expect(await refused('/v1/events?after=4')).toEqual([409, 'cursor_beyond_end', []])
    })
  }, 60_000)
})
