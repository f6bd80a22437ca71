/** One request waiting in the queue, settled once its commit is durable or failed. */
export interface Pending<Req, Res> {
  request: Req
  resolve: (r: Res) => void
  reject: (e: Error) => void
}

/** What the queue commits with. */
export interface CommitQueueInit<Req, Res> {
  /** at most this many requests commit together (a group is never split) */
  maxBatch: number
  /** writes one batch; settles each request it commits or refuses */
  commit: (batch: Array<Pending<Req, Res>>) => Promise<void>
  /** settles every request of a batch whose commit threw */
  failed: (batch: Array<Pending<Req, Res>>, err: Error) => void
}

/**
 * The group-commit queue: every request that arrives while one commit is being written goes into the
 * next one. One writer at a time: commits, and whatever else runs through `serial`, never interleave.
 */
export class CommitQueue<Req, Res> {
  private readonly init: CommitQueueInit<Req, Res>
  /** groups of requests, each committed whole (a batch request is one group) */
  private queue: Array<Array<Pending<Req, Res>>> = []
  private committing: Promise<void> | undefined
  private tail: Promise<void> = Promise.resolve()

  constructor(init: CommitQueueInit<Req, Res>) {
    this.init = init
  }

  /** Queues requests to be committed together; @returns their results once durable */
  async enqueue(requests: readonly Req[]): Promise<Res[]> {
    return await new Promise<Res[]>((resolve, reject) => {
      const results = new Array<Res>(requests.length)
      let left = requests.length
      let failed = false
      const group = requests.map(
        (request, i): Pending<Req, Res> => ({
          request,
          resolve: (r) => {
            results[i] = r
            if (--left === 0 && !failed) resolve(results)
          },
          reject: (e) => {
            if (!failed) {
              failed = true
              reject(e)
            }
          }
        })
      )
      this.queue.push(group)
      this.kick()
    })
  }

  /** Waits until every queued request is committed or failed. */
  async flush(): Promise<void> {
    while (this.committing != null) await this.committing
  }

  /** Runs `fn` after every commit or other serial run before it: they never interleave. */
  async serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn)
    this.tail = run.then(
      () => {},
      () => {}
    )
    return await run
  }

  /**
   * Commits one batch in its turn of `serial`, then queues the next behind whatever `serial` work came
   * meanwhile: a prune or a garbage collection waits for the commit under way, never for the publishers to
   * pause.
   */
  private kick(): void {
    if (this.committing != null) return
    this.committing = this.serial(async () => {
      if (this.queue.length === 0) return
      // SQLite's writes block the event loop: yield a turn so that the requests that arrived meanwhile
      // (sockets ready to read) are parsed and join this batch, instead of trickling into tiny commits.
      await new Promise((resolve) => setImmediate(resolve))
      const batch = this.nextBatch()
      try {
        await this.init.commit(batch)
      } catch (err) {
        this.init.failed(batch, err as Error)
      }
    }).finally(() => {
      this.committing = undefined
      // The next batch: requests that arrived during this one (or after, but before this ran).
      if (this.queue.length > 0) this.kick()
    })
  }

  /** @returns whole groups from the queue, up to max-batch requests (at least one group) */
  private nextBatch(): Array<Pending<Req, Res>> {
    const batch: Array<Pending<Req, Res>> = []
    while (this.queue.length > 0 && (batch.length === 0 || batch.length + this.queue[0].length <= this.init.maxBatch)) batch.push(...this.queue.shift()!)
    return batch
  }
}
