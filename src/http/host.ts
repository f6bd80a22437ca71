const LOOPBACK_HOST = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|\[::1\])$/i

/**
 * Whether a Host header names this endpoint: a loopback name or address (or the address bound with
 * --force-http), with the listening port or none. A page the operator opens can resolve its own name to
 * 127.0.0.1 (DNS rebinding), but its requests still carry that name, so they are refused.
 *
 * @returns true when the request may be served
 */
export function hostAllowed(header: string | undefined, bound: { port?: number; host?: string }): boolean {
  if (header == null) return false
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d{1,5}))?$/.exec(header.trim())
  if (m == null) return false
  const [, name, port] = m
  if (port != null && bound.port != null && Number(port) !== bound.port) return false
  if (LOOPBACK_HOST.test(name)) return true
  if (bound.host == null) return false
  const host = bound.host.includes(':') ? `[${bound.host}]` : bound.host
  return name.toLowerCase() === host.toLowerCase()
}
