/**
 * Every error class cairn throws on purpose, in one place (as js-libp2p keeps its own). Callers branch on
 * `.name`, never on message text. Bad input from outside (flags, files, HTTP bodies, the network) is a
 * ValidationError or one of its specific kinds; what JavaScript throws by itself (TypeError, RangeError)
 * is a bug, and is reported as one (an HTTP 500 with the stack logged, a CLI crash report).
 */
import type { Issue } from './model/issues.ts'

/** An operator-facing error: its message is printed alone, without a stack trace. */
export class UsageError extends Error {
  static name = 'UsageError'
  constructor(message: string) {
    super(message)
    this.name = 'UsageError'
  }
}

/** The data directory is missing, incomplete or damaged. */
export class DataDirError extends Error {
  static name = 'DataDirError'
  constructor(message: string) {
    super(message)
    this.name = 'DataDirError'
  }
}

/** Another process held the write lock of a database whose schema was behind (a migration under way) for longer than an open waits. */
export class MigrationWaitError extends Error {
  static name = 'MigrationWaitError'
  constructor(current: number, latest: number, waitedMs: number) {
    super(
      `another process held its write lock for ${Math.round(waitedMs / 1000)} s while its schema stayed at version ${current} of ${latest} (a migration under way, by a node starting or a cairn command on the same data directory, or a stuck writer): let that process finish, or stop it, then run this again`
    )
    this.name = 'MigrationWaitError'
  }
}

/** Another process is running a node on the same data directory. */
export class DataDirBusyError extends Error {
  static name = 'DataDirBusyError'
  constructor(message: string) {
    super(message)
    this.name = 'DataDirBusyError'
  }
}

/** A setting (flag, environment variable or config.json entry) has a bad value. */
export class ConfigError extends Error {
  static name = 'ConfigError'
  constructor(message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

/** Input that failed validation; `issues` says where and what, each with a machine-readable code. */
export class ValidationError extends Error {
  static name = 'ValidationError'
  readonly issues: Issue[]
  constructor(message: string, issues: Issue[] = []) {
    super(message)
    this.name = 'ValidationError'
    this.issues = issues
  }
}

/** An event is larger than the limit; the HTTP endpoint answers 413. */
export class EventTooLargeError extends Error {
  static name = 'EventTooLargeError'
  constructor(message: string) {
    super(message)
    this.name = 'EventTooLargeError'
  }
}

/** A commit of the outbox failed; nothing of it was written, and the request may be retried. */
export class CommitFailedError extends Error {
  static name = 'CommitFailedError'
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'CommitFailedError'
  }
}

/** The node (or one of its services) is not started, so it cannot do what was asked. */
export class NotStartedError extends Error {
  static name = 'NotStartedError'
  constructor(message = 'Not started') {
    super(message)
    this.name = 'NotStartedError'
  }
}

/** The node is not running, so a verb that talks to it cannot. */
export class NotRunningError extends Error {
  static name = 'NotRunningError'
  constructor(message: string) {
    super(message)
    this.name = 'NotRunningError'
  }
}

/** The HTTP port or a --listen address is taken by another process. */
export class AddressInUseError extends Error {
  static name = 'AddressInUseError'
  constructor(message: string) {
    super(message)
    this.name = 'AddressInUseError'
  }
}

/** The HTTP endpoint or a --listen address cannot be listened on for another reason (not on this host, no permission): the message names it and the system's reason. */
export class ListenError extends Error {
  static name = 'ListenError'
  constructor(message: string) {
    super(message)
    this.name = 'ListenError'
  }
}

/** The running node answered a CLI verb's request with an error: the message names the HTTP status and the node's own message. */
export class NodeAnswerError extends Error {
  static name = 'NodeAnswerError'
  readonly status: number
  constructor(status: number, message: string) {
    super(message)
    this.name = 'NodeAnswerError'
    this.status = status
  }
}

/** A plugin snapshot that cannot be used: it does not parse, its signature does not verify, or it is not what it claims. */
export class InvalidSnapshotError extends Error {
  static name = 'InvalidSnapshotError'
  /** `malformed_snapshot`, `oversized_snapshot`, `bad_signature`, `wrong_producer` or `wrong_plugin` */
  readonly reason: string
  constructor(reason: string, message: string) {
    super(message)
    this.name = 'InvalidSnapshotError'
    this.reason = reason
  }
}

/** A head that fails to parse or verify, or that is not acceptable; `reason` is the metric label. */
export class InvalidHeadError extends Error {
  static name = 'InvalidHeadError'
  readonly reason: string
  /** the producer the head names, once it parsed */
  readonly producer?: string
  constructor(reason: string, message: string, producer?: string) {
    super(message)
    this.name = 'InvalidHeadError'
    this.reason = reason
    this.producer = producer
  }
}

/** A block that should be a UnixFS directory (plain or HAMT shard) is not one this code reads. */
export class MalformedDirectoryError extends Error {
  static name = 'MalformedDirectoryError'
  constructor(message: string) {
    super(message)
    this.name = 'MalformedDirectoryError'
  }
}

/** A shard an outbox bucket needs is not in the store, or is not one this code writes. */
export class ShardUnreadableError extends Error {
  static name = 'ShardUnreadableError'
  constructor(message: string) {
    super(message)
    this.name = 'ShardUnreadableError'
  }
}

/**
 * The own outbox tree that the head points at misses blocks that cannot be rebuilt from cairn.db; the node
 * refuses to start rather than serve or announce that head. `lost` names each block and why.
 */
export class OutboxBlocksLostError extends Error {
  static name = 'OutboxBlocksLostError'
  readonly lost: ReadonlyArray<{ what: string; cid: string; reason: string }>
  constructor(message: string, lost: ReadonlyArray<{ what: string; cid: string; reason: string }>) {
    super(message)
    this.name = 'OutboxBlocksLostError'
    this.lost = lost
  }
}

/** A plugin cannot be loaded or started; the message names the plugin, its file and the problem. */
export class PluginLoadError extends Error {
  static name = 'PluginLoadError'
  constructor(message: string) {
    super(message)
    this.name = 'PluginLoadError'
  }
}

/**
 * SQLite rolled back the whole transaction by itself (a statement with ON CONFLICT ROLLBACK or RAISE(ROLLBACK),
 * a full disk) while a savepoint inside it ran: nothing more may be written until the outermost transaction
 * unwinds, or it would commit on its own, outside the transaction it belonged to.
 */
export class TransactionRolledBackError extends Error {
  static name = 'TransactionRolledBackError'
  constructor(cause: string) {
    super(`SQLite rolled back the whole transaction: ${cause}`)
    this.name = 'TransactionRolledBackError'
  }
}

/** An event a plugin can never apply (payload fails its schema, no upcaster): dead-lettered, never retried. */
export class PermanentError extends Error {
  static name = 'PermanentError'
  constructor(message: string) {
    super(message)
    this.name = 'PermanentError'
  }
}

/**
 * A producer's tree that a walk refuses as a whole (repeated or misplaced directories, duplicate seqs,
 * more directories than its head's seq range justifies); `reason` is the metric label.
 */
export class RefusedTreeError extends Error {
  static name = 'RefusedTreeError'
  readonly reason: string
  constructor(reason: string, message: string) {
    super(message)
    this.name = 'RefusedTreeError'
    this.reason = reason
  }
}

/**
 * A timestamp too far from this node's clock: an event of another producer stamped further ahead than
 * --max-clock-skew (held until the clock catches up), or this node's own clock off from the network's
 * (it refuses to publish; HTTP 503).
 */
export class ClockSkewError extends Error {
  static name = 'ClockSkewError'
  readonly reason = 'clock_skew'
  /** for a held event: how long until its timestamp is within the skew of this node's clock (ms) */
  readonly retryInMs?: number
  constructor(message: string, retryInMs?: number) {
    super(message)
    this.name = 'ClockSkewError'
    this.retryInMs = retryInMs
  }
}

/**
 * A peer holds a head of this node's own producer, signed with its key, ahead of its outbox: its cairn.db
 * is older than what it published (restored from an older backup, replaced) or its identity runs on
 * another node too. A publish would reuse seqs that every peer already has and refuses (HTTP 409).
 */
export class ProducerDivergedError extends Error {
  static name = 'ProducerDivergedError'
  readonly reason = 'producer_diverged'
  constructor(message: string) {
    super(message)
    this.name = 'ProducerDivergedError'
  }
}

/**
 * This node holds an owner's removal of itself: every other node refuses its events after the removal's
 * last valid seq, so a publish would be answered and reach no one (HTTP 409), until an owner adds it again.
 */
export class RemovedMemberError extends Error {
  static name = 'RemovedMemberError'
  readonly reason = 'removed_member'
  constructor(message: string) {
    super(message)
    this.name = 'RemovedMemberError'
  }
}

/**
 * An idempotency key (Idempotency-Key or event_id) reused for a different request: the first event stands
 * and the new request is refused (HTTP 409); `eventId` names the first event.
 */
export class IdempotencyConflictError extends Error {
  static name = 'IdempotencyConflictError'
  readonly eventId: string
  readonly issues: Issue[]
  constructor(message: string, eventId: string, issues: Issue[] = []) {
    super(message)
    this.name = 'IdempotencyConflictError'
    this.eventId = eventId
    this.issues = issues
  }
}

/**
 * A well-formed cursor this node cannot resume from (HTTP 409): beyond the last cursor it ever handed out,
 * or of another cursor space (the database was reset or belongs to another node). `reason` is the error code.
 */
export class StaleCursorError extends Error {
  static name = 'StaleCursorError'
  readonly reason: 'cursor_beyond_end' | 'cursor_space_mismatch'
  constructor(reason: 'cursor_beyond_end' | 'cursor_space_mismatch', message: string) {
    super(message)
    this.name = 'StaleCursorError'
    this.reason = reason
  }
}

/** Something asked for by name (an event type's schema) is not there (HTTP 404). */
export class NotFoundError extends Error {
  static name = 'NotFoundError'
  constructor(message: string) {
    super(message)
    this.name = 'NotFoundError'
  }
}

/** A membership change asked of a node that is not an owner; the HTTP endpoint answers 403. */
export class NotOwnerError extends Error {
  static name = 'NotOwnerError'
  constructor(message: string) {
    super(message)
    this.name = 'NotOwnerError'
  }
}

/** A producer's walk waits until this node has processed the owners' events that producer had seen. */
export class WaitingForOwnerError extends Error {
  static name = 'WaitingForOwnerError'
  constructor(message: string) {
    super(message)
    this.name = 'WaitingForOwnerError'
  }
}

/** A membership change the node's `/v1/members` refused (the console shows it): the HTTP status and the node's message. */
export class MemberChangeRefused extends Error {
  static name = 'MemberChangeRefused'
  readonly status: number
  constructor(status: number, message: string) {
    super(message)
    this.name = 'MemberChangeRefused'
    this.status = status
  }
}
