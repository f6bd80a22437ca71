// Publishes events over one streaming request (POST /v1/events/stream) with plain fetch, as docs/api.md
// shows: runs unchanged under Node 20+, Bun and Deno. Usage: node publish-stream.mjs DATA_DIR COUNT TYPE
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

const [dir, count, type] = process.argv.slice(2)
const { http } = JSON.parse(readFileSync(join(dir, 'node.json'), 'utf8'))
const token = readFileSync(join(dir, 'api.token'), 'utf8').trim()

const n = Number(count)
let i = 0
const encoder = new TextEncoder()
// One publish request per line; each line's event_id is its idempotency key.
const body = new ReadableStream({
  pull(controller) {
    if (i === n) return controller.close()
    controller.enqueue(encoder.encode(`${JSON.stringify({ type, payload: { i }, event_id: `${type}-${i}` })}\n`))
    i++
  }
})
const res = await fetch(`http://${http}/v1/events/stream`, {
  method: 'POST',
  headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
  body,
  duplex: 'half' // Node's fetch needs it for a streamed body
})
if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`)
// One acknowledgement per line, in order, each once its event is durable.
const decoder = new TextDecoder()
let rest = ''
let acked = 0
for await (const chunk of res.body) {
  rest += decoder.decode(chunk, { stream: true })
  const lines = rest.split('\n')
  rest = lines.pop()
  for (const line of lines) {
    const ack = JSON.parse(line)
    if (ack.error) console.error(`line ${ack.line}: ${ack.error.message}`)
    else acked++
  }
}
console.log(`${acked} published`)
