import { describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { initDataDir } from '../../src/datadir/init.ts'
import { inProcessNode } from '../helpers/forge.ts'
import { tempDir } from '../helpers/process.ts'
import type { CairnNode } from '../../src/node/node.ts'

async function withNode(flags: Record<string, unknown>, fn: (node: CairnNode, dir: string) => Promise<void>): Promise<void> {
  using tmp = tempDir()
  const dir = join(tmp.path, 'n')
  await initDataDir(dir, { newNetwork: true })
  const node = await inProcessNode(dir, flags)
  try {
    await fn(node, dir)
  } finally {
    await node.stop()
  }
}

/** Sends one raw HTTP/1.1 request with the given Host header and returns the status code. */
async function statusWithHost(port: number, path: string, host: string): Promise<number> {
  return await new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)
    })
    let text = ''
    socket.on('data', (d) => {
      text += d.toString()
    })
    socket.on('error', reject)
    socket.on('close', () => {
      resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0))
    })
  })
}

describe('the loopback endpoint', () => {
  test('a request naming another host (DNS rebinding) is refused on every route; loopback names are served', async () => {
    await withNode({}, async (node) => {
      const port = node.http!.port
      for (const path of ['/status', '/metrics', '/healthz', '/v1/events']) {
        expect(await statusWithHost(port, path, `evil.example:${port}`)).toBe(421)
        expect(await statusWithHost(port, path, 'evil.example')).toBe(421)
      }
      for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `127.1.2.3:${port}`, 'localhost']) {
        expect(await statusWithHost(port, '/status', host)).toBe(200)
        expect(await statusWithHost(port, '/metrics', host)).toBe(200)
      }
      // The right name on another port is someone else's endpoint.
      expect(await statusWithHost(port, '/status', `127.0.0.1:${port + 1}`)).toBe(421)
    })
  })

  test('an event stream stays open past the idle timeout: its heartbeat comes sooner', async () => {
    await withNode({ 'http-idle-timeout': '2s' }, async (node, dir) => {
      const token = readFileSync(join(dir, 'api.token'), 'utf8').trim()
      const port = node.http!.port
      const seen = await new Promise<{ heartbeats: number; openMs: number; closed: boolean }>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1', () => {
          socket.write(`GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${token}\r\n\r\n`)
        })
        let heartbeats = 0
        let first: number | undefined
        socket.on('data', (d) => {
          heartbeats += d.toString().split(': heartbeat').length - 1
          if (heartbeats === 0) return
          first ??= Date.now()
          // Open for twice the idle timeout since the first heartbeat, with heartbeats all along.
          if (Date.now() - first > 4000) {
            socket.destroy()
            resolve({ heartbeats, openMs: Date.now() - first, closed: false })
          }
        })
        socket.on('error', reject)
        socket.on('close', () => {
          resolve({ heartbeats, openMs: Date.now() - (first ?? Date.now()), closed: true })
        })
      })
      expect(seen.closed).toBe(false)
      expect(seen.heartbeats).toBeGreaterThan(2)
    })
  }, 120_000)

  test('a keep-alive connection that goes quiet after a request is closed after the idle timeout', async () => {
    await withNode({ 'http-idle-timeout': '1s' }, async (node) => {
      const port = node.http!.port
      const answered = await new Promise<string>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1', () => {
          socket.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`)
        })
        let text = ''
        socket.on('data', (d) => {
          text += d.toString()
        })
        socket.on('error', reject)
        // Closed by the server: before the idle timeout, a keep-alive connection stayed open for good.
        socket.on('close', () => {
          resolve(text)
        })
      })
      expect(answered).toStartWith('HTTP/1.1 200')
    })
  }, 60_000)
})
