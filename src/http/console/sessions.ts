import { createHash, randomBytes } from 'node:crypto'

/** How long a login link printed by `cairn console` may be used (once). */
const LINK_TTL_MS = 10 * 60_000
/** How long a browser session lasts after its login. */
const SESSION_TTL_MS = 12 * 60 * 60_000
/** Unused links kept at most; a new one beyond this replaces the oldest. */
const MAX_LINKS = 16
/** Sessions kept at most; a login beyond this ends the oldest session. */
const MAX_SESSIONS = 64

const digest = (secret: string): string => createHash('sha256').update(secret).digest('hex')

/**
 * The console's one-time login links and browser sessions, in memory only (a restart logs every browser out).
 * Only SHA-256 digests of the secrets are kept, so the map holds nothing a browser could present. Both tables
 * are bounded: the oldest entry goes when a new one would pass the bound.
 */
export class ConsoleSessions {
  private readonly links = new Map<string, number>()
  private readonly sessions = new Map<string, number>()
  private readonly now: () => number

  constructor(now: () => number = Date.now) {
    this.now = now
  }

  /** @returns a new one-time login secret, valid for ten minutes */
  createLink(): string {
    const secret = randomBytes(32).toString('base64url')
    this.expire()
    if (this.links.size >= MAX_LINKS) this.links.delete(this.links.keys().next().value as string)
    this.links.set(digest(secret), this.now() + LINK_TTL_MS)
    return secret
  }

  /**
   * Uses a login secret up: a second use of the same link fails.
   *
   * @returns a new session secret (the cookie's value), or undefined when the link is unknown, used or expired
   */
  redeem(link: string): string | undefined {
    this.expire()
    const key = digest(link)
    if (!this.links.has(key)) return undefined
    this.links.delete(key)
    const session = randomBytes(32).toString('base64url')
    if (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value as string)
    this.sessions.set(digest(session), this.now() + SESSION_TTL_MS)
    return session
  }

  /** @returns whether `session` names a live session */
  valid(session: string | undefined): boolean {
    if (session == null || session === '') return false
    const until = this.sessions.get(digest(session))
    return until != null && until > this.now()
  }

  /** Ends a session (logout). */
  end(session: string | undefined): void {
    if (session != null) this.sessions.delete(digest(session))
  }

  private expire(): void {
    const now = this.now()
    for (const [k, until] of this.links) if (until <= now) this.links.delete(k)
    for (const [k, until] of this.sessions) if (until <= now) this.sessions.delete(k)
  }
}
