import { runtimeName } from './runtime.ts'
import { AddressInUseError, ListenError } from '../errors.ts'

/** A running HTTP server. */
export interface HttpServer {
  readonly hostname: string
  readonly port: number
  stop(): Promise<void>
}

/** How long a connection may stay silent and how many requests are served at once. */
export interface ServeLimits {
  /** a connection that sends and receives nothing for this long is closed (whole seconds, 1 to 255) */
  idleTimeoutMs: number
  /** requests in flight (event streams included) beyond this are answered 503 */
  maxConnections: number
}

type Handler = (r: Request) => Response | Promise<Response>

interface BunServer {
  port: number
  pendingRequests: number
  timeout(r: Request, seconds: number): void
  stop(force?: boolean): Promise<void> | void
}
interface BunLike {
  serve(o: { hostname: string; port: number; fetch: (r: Request, server: BunServer) => Response | Promise<Response>; idleTimeout?: number }): BunServer
}
interface DenoLike {
  serve(o: { hostname: string; port: number; onListen?: () => void }, h: Handler): { addr: { port: number }; shutdown(): Promise<void> }
}

const DEFAULT_LIMITS: ServeLimits = { idleTimeoutMs: 30_000, maxConnections: 256 }

/** @returns the 503 a request over the cap gets */
function overCapacity(limit: number): Response {
  return Response.json(
    { error: { code: 'too_many_connections', message: `Too many connections: the endpoint serves at most ${limit} requests at once (--http-max-connections)`, issues: [] } },
    { status: 503, headers: { connection: 'close', 'retry-after': '1' } }
  )
}

/**
 * Serves `fetch` on hostname:port with the runtime's own server (Bun.serve or Deno.serve). Silent
 * connections are closed after the idle timeout (Bun closes them itself; Deno.serve has no such setting
 * and keeps its own default), and requests beyond the cap are answered 503 without reaching `fetch`.
 *
 * @param fetch the request handler (a hono app's `fetch`)
 * @returns the server with its real port (useful with port 0)
 * @throws AddressInUseError when the port is taken; ListenError when the system refuses the address for another reason
 */
export function serve(fetch: Handler, hostname: string, port: number, limits: ServeLimits = DEFAULT_LIMITS): HttpServer {
  const { maxConnections } = limits
  try {
    if (runtimeName() === 'bun') {
      const idleTimeout = Math.min(255, Math.max(1, Math.round(limits.idleTimeoutMs / 1000)))
      const server = (globalThis as unknown as { Bun: BunLike }).Bun.serve({
        hostname,
        port,
        idleTimeout,
        fetch: async (r, s) => {
          // pendingRequests counts this request and every stream still open.
          if (s.pendingRequests > maxConnections) return overCapacity(maxConnections)
          const res = await fetch(r)
          // Bun's idle timer runs on through a streamed body however often it writes: an event stream, which
          // sends at least a heartbeat, is exempt (and still counted against the cap until it ends).
          // A streaming publish (application/x-ndjson) is exempt too: it keeps its own idle timeout, reset by every
          // line read and every acknowledgement taken.
          const type = res.headers.get('content-type')
          if (type?.startsWith('text/event-stream') === true || type?.startsWith('application/x-ndjson') === true) s.timeout(r, 0)
          return res
        }
      })
      return {
        hostname,
        port: server.port,
        stop: async () => {
          await server.stop(true)
        }
      }
    }
    let inFlight = 0
    const counted = async (r: Request): Promise<Response> => {
      if (inFlight >= maxConnections) return overCapacity(maxConnections)
      inFlight++
      try {
        return await fetch(r)
      } finally {
        inFlight--
      }
    }
    const server = (globalThis as unknown as { Deno: DenoLike }).Deno.serve({ hostname, port, onListen: () => {} }, counted)
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
    // The system refused the address itself: not one of this host's (EADDRNOTAVAIL), a port this user may not open (EACCES).
    if (e.code != null && /^E[A-Z]+$/.test(e.code)) throw new ListenError(`Cannot listen on --http ${hostname}:${port}: ${e.message}; fix --http (an address of this host, a port this user may open)`)
    throw err
  }
}
