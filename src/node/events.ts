import { TypedEventEmitter } from 'main-event'
import type { EventEnvelope } from '../model/envelope.ts'
import type { Head } from '../model/head.ts'
import type { Block } from '../unixfs/tree.ts'

/** A catch-up's progress, about once a second while a walk has a large backlog. */
export interface SyncProgress {
  producer: string
  done: number
  total: number
  rate: number
  eta_s: number
}

/** A head of this node's own producer that shows its history diverged (see 'self:diverged'). */
export interface Divergence {
  seq: number
  root: string
  outbox_seq: number
  /** the file at `seq` in that head's tree and this node's own there, each as `bucket/name (cid)`, when they differ */
  fork?: { file: string; own: string }
}

/** Why something from a peer (a head, a file) was refused; `reason` is the metric label. */
export interface Rejected {
  reason: string
  detail: string
  /** the peer it came from, or the producer it names */
  peer: string
  /** the producer whose head or file was rejected, when known */
  producer?: string
}

/**
 * What happens inside a node, as libp2p names its events (`'noun:verb'`). Services dispatch them;
 * the node turns them into metrics, logs and wake-ups, and tests wait on them instead of polling.
 */
export interface CairnEvents {
  /** new rows in the events table, own and fetched, in the order they were added */
  'events:ingested': CustomEvent<EventEnvelope[]>
  /** this node committed events to its outbox; `blocks` are the commit's new blocks, `head` its signed head */
  'outbox:committed': CustomEvent<{ head: Uint8Array; events: EventEnvelope[]; blocks: Block[] }>
  /** this node pruned files from its outbox; `head` is the new signed head */
  'outbox:pruned': CustomEvent<{ head: Uint8Array; removed: number }>
  /** a head moved a producer's head forward */
  'head:accepted': CustomEvent<Head>
  /**
   * a peer holds a head of this node's own producer (signed with its key) at `seq`, ahead of its outbox's
   * `outbox_seq`: its cairn.db is behind what it published, or its identity runs elsewhere too; with `fork`,
   * a head at a seq this node published whose tree has another file there (`file`) than its own (`own`):
   * its identity runs elsewhere too (sync/forkCheck.ts)
   */
  'self:diverged': CustomEvent<Divergence>
  /** a head, file or request from a peer was refused */
  'peer:rejected': CustomEvent<Rejected>
  'sync:progress': CustomEvent<SyncProgress>
  /** no walk is under way or due */
  'sync:idle': CustomEvent<void>
  /** a plugin applied an event; `ms` is how long apply took */
  'plugin:applied': CustomEvent<{ plugin: string; event: EventEnvelope; ms: number }>
  /** a plugin's rebuild began beside the running node (in its shadow file; its tables stay as they are until the swap) */
  'plugin:rebuilding': CustomEvent<{ plugin: string }>
  /** a plugin's tables were rebuilt from the retained events (a snapshot it was loaded from is forgotten) */
  'plugin:rebuilt': CustomEvent<{ plugin: string; applied: number }>
  /** a processing round ended: the plugins' watermark may have moved */
  'plugins:progress': CustomEvent<void>
  /** every plugin has processed every row it can now */
  'plugins:idle': CustomEvent<void>
}

/**
 * The typed event bus that every service of a node shares. A service dispatches in the middle of its own
 * work (a commit, a walk), so a listener that throws must not unwind it: `listen` catches and reports.
 */
export class CairnEventBus extends TypedEventEmitter<CairnEvents> {
  private readonly onListenerError: (err: Error, type: string) => void

  /** @param onListenerError told of an error a listener added with `listen` threw (default: rethrown on a later turn) */
  constructor(onListenerError?: (err: Error, type: string) => void) {
    super()
    this.onListenerError =
      onListenerError ??
      ((err) => {
        queueMicrotask(() => {
          throw err
        })
      })
  }

  /**
   * Calls `fn` with the detail of every `type` event; an error it throws is reported, not passed to the dispatcher.
   *
   * @returns a function that stops listening
   */
  listen<K extends keyof CairnEvents>(type: K, fn: (detail: CairnEvents[K]['detail']) => void): () => void {
    const listener = (evt: CairnEvents[K]): void => {
      try {
        fn(evt.detail)
      } catch (err) {
        this.onListenerError(err as Error, type)
      }
    }
    this.addEventListener(type, listener)
    return () => {
      this.removeEventListener(type, listener)
    }
  }
}

/**
 * Waits for `type` on `events`, or until `signal` aborts.
 *
 * @returns the event's detail
 * @throws the signal's reason when it aborts first
 */
export async function waitFor<K extends keyof CairnEvents>(
  events: CairnEventBus,
  type: K,
  options: { signal?: AbortSignal; filter?: (e: CairnEvents[K]) => boolean } = {}
): Promise<CairnEvents[K]['detail']> {
  return await new Promise((resolve, reject) => {
    const onEvent = (e: CairnEvents[K]): void => {
      if (options.filter != null && !options.filter(e)) return
      cleanup()
      resolve(e.detail)
    }
    const onAbort = (): void => {
      cleanup()
      reject(options.signal?.reason)
    }
    const cleanup = (): void => {
      events.removeEventListener(type, onEvent)
      options.signal?.removeEventListener('abort', onAbort)
    }
    if (options.signal?.aborted === true) {
      reject(options.signal.reason)
      return
    }
    events.addEventListener(type, onEvent)
    options.signal?.addEventListener('abort', onAbort)
  })
}
