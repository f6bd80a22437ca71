import { runtimeName } from './runtime.ts'
import { AddressInUseError } from '../errors.ts'

/** A running HTTP server. */
export interface HttpServer {
  readonly hostname: string
  readonly port: number
  stop(): Promise<void>
}

interface BunLike {
  serve(o: { hostname: string; port: number; fetch: (r: Request) => Response | Promise<Response>; idleTimeout?: number }): { port: number; stop(force?: boolean): Promise<void> | void }
}
interface DenoLike {
  serve(o: { hostname: string; port: number; onListen?: () => void }, h: (r: Request) => Response | Promise<Response>): { addr: { port: number }; shutdown(): Promise<void> }
}

/**
 * Serves `fetch` on hostname:port with the runtime's own server (Bun.serve or Deno.serve).
 *
 * @param fetch the request handler (a hono app's `fetch`)
 * @returns the server with its real port (useful with port 0)
 * @throws AddressInUseError when the port is taken
 */
export function serve(fetch: (r: Request) => Response | Promise<Response>, hostname: string, port: number): HttpServer {
  try {
    if (runtimeName() === 'bun') {
      const server = (globalThis as unknown as { Bun: BunLike }).Bun.serve({ hostname, port, fetch, idleTimeout: 0 })
      return {
        hostname,
        port: server.port,
        stop: async () => {
          await server.stop(true)
        }
      }
    }
    const server = (globalThis as unknown as { Deno: DenoLike }).Deno.serve({ hostname, port, onListen: () => {} }, fetch)
    return {
      hostname,
      port: server.addr.port,
      stop: async () => {
        await server.shutdown()
      }
    }
  } catch (err) {
    const e = err as { code?: string; name?: string; message?: string }
    if (e.code === 'EADDRINUSE' || e.name === 'AddrInUse' || /in use/i.test(e.message ?? '')) {
      throw new AddressInUseError(`Cannot listen on ${hostname}:${port}: the address is already in use; pick another --http port or 0 for any free port`)
    }
    throw err
  }
}
