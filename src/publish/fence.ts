/**
 * Holds a started node's publishes until a peer has pushed it the heads it knows, or a bound passed.
 *
 * A node's outbox continues from the seq in its cairn.db. One restored from an older backup would publish
 * seqs its peers already hold (they refuse them), and learns it is behind only when a peer hands it its own
 * newer head ('self:diverged', after which every publish is refused). Held until then, a publish is refused
 * rather than acknowledged and lost. The fence opens once: at the first push or at the bound; a stop before
 * either refuses what it holds (refuse()), since the node still cannot tell whether it is behind.
 */
export class PublishFence {
  /** undefined once open: publishes go straight on */
  private held?: Promise<void>
  private release?: () => void
  private reject?: (err: Error) => void
  private timer?: ReturnType<typeof setTimeout>

  /**
   * @param ms the most it holds publishes; 0 opens it at once
   * @param onExpired told when the bound opened it (no peer pushed in time)
   */
  constructor(ms: number, onExpired: () => void) {
    if (ms <= 0) return
    this.held = new Promise<void>((resolve, reject) => {
      this.release = resolve
      this.reject = reject
    })
    // Refused with no publish waiting is no unhandled rejection; each waiting publish still gets the error.
    this.held.catch(() => {})
    this.timer = setTimeout(() => {
      if (this.held == null) return
      this.open()
      onExpired()
    }, ms)
    // A start that fails leaves nothing that keeps the process alive.
    this.timer.unref?.()
  }

  /** @returns whether publishes are held now */
  get closed(): boolean {
    return this.held != null
  }

  /** @returns a promise of the opening while publishes are held, else undefined (nothing to wait for) */
  wait(): Promise<void> | undefined {
    return this.held
  }

  /** Lets every held and later publish go on. */
  open(): void {
    this.end()?.release()
  }

  /** Refuses every publish held now with `err` (the node stops before it could tell); later ones go on. */
  refuse(err: Error): void {
    this.end()?.reject(err)
  }

  /** @returns how to settle the publishes held now, once: the fence is open from here on */
  private end(): { release: () => void; reject: (err: Error) => void } | undefined {
    clearTimeout(this.timer)
    const { release, reject } = this
    this.held = undefined
    this.release = undefined
    this.reject = undefined
    return release == null || reject == null ? undefined : { release, reject }
  }
}
