import * as v from 'valibot'
import { NotOwnerError, ValidationError } from '../errors.ts'
import { issueLine, toIssues } from '../model/issues.ts'
import type { EventEnvelope } from '../model/envelope.ts'
import type { Rejection } from '../model/eventFile.ts'
import {
  ADD_MEMBER_FIELDS,
  AddMemberSchema,
  type ChangeEvent,
  foldMembers,
  type KeptAfterRemoval,
  keptAfterRemovalText,
  isReservedType,
  lastRefused,
  MEMBERS_TYPE,
  RESERVED_PREFIX,
  OWNERS_KEY,
  type MemberEntry,
  type MembershipState,
  parseChange,
  type RefusedChange,
  type RemovedEntry
} from '../model/members.ts'
import type { PublishResult } from '../model/publishRequest.ts'
import type { Components } from '../node/components.ts'

/**
 * The most membership changes the fold reads of each author, the first in stamp order. Only changes of
 * producers who are or were owners are read, each from the first change that names it owner (owners are
 * trusted to change the membership), so this bounds what a misbehaving owner, or one demoted, costs, not a
 * member; and however many one author writes, the others' are read.
 */
const MAX_CHANGES = 100_000

/** One member as `cairn members list` and `GET /v1/members` show it. */
export interface MemberView {
  peer_id: string
  name: string | null
  role: 'member' | 'owner'
  /** the owner whose change added it; null for a founding owner */
  added_by: string | null
  added_at: string | null
  connected: boolean
  self: boolean
}

/** What `cairn members list --json`, `GET /v1/members` and the status document say of the membership. */
export interface MembersDocument {
  /** 'changes': owners' signed changes govern; 'setting': the static members setting; 'open': every holder of the swarm key */
  source: 'changes' | 'setting' | 'open'
  /** whether this node may change the membership */
  self_is_owner: boolean
  members: MemberView[]
  removed: Array<Omit<RemovedEntry, 'name'> & { name: string | null }>
  /**
   * the owners' changes that took no effect (last owner, voided by a removal, not an owner at that point, invalid):
   * the last REFUSED_SHOWN to arrive here, in that order; absent from older nodes' documents
   */
  refused?: RefusedChange[]
  /** how many changes took no effect in all */
  refused_total?: number
}

/** How many of the refused changes the members document lists (the last to arrive here). */
export const REFUSED_SHOWN = 20

/** What the membership needs besides the store. */
export interface MembershipInit {
  /** the static `members` setting (peer id → name), when set */
  setting?: Map<string, string | undefined>
  /** publishes reserved events (changes) from this node, in one commit, in order */
  publish: (requests: Array<{ type: string; payload: unknown }>) => Promise<PublishResult[]>
  /** the peers this node is connected to */
  connected?: () => Set<string>
  /**
   * told after a change ingested altered who may write (a re-admitted member's events can be walked again),
   * and after a removal this node failed to commit (the member's events were refused while it was under way)
   */
  onChange?: () => void
}

/**
 * Who may write, from the owners' signed `cairn.members` changes (see model/members.ts for the fold),
 * falling back to the static `members` setting, then to every holder of the swarm key, while the network
 * has never used the changes. Recomputed whenever a change is ingested.
 */
export class Membership {
  private readonly init: MembershipInit
  private readonly components: Pick<Components, 'self' | 'store' | 'events' | 'log'>
  private founders: string[] = []
  /**
   * founders ('') and every peer a change names owner, with the stamp of the first such change: the only producers
   * whose changes the fold reads, each from that stamp on
   */
  private authors = new Map<string, string>()
  private state: MembershipState = { members: new Map(), removed: new Map(), refused: [], applied: 0 }
  /** the last REFUSED_SHOWN refused changes to arrive here, taken at each fold (documents are read far more often) */
  private refusedShown: RefusedChange[] = []
  /** changes already counted as refused, so that a refold does not count them again (bounded by the changes the fold reads) */
  private readonly counted = new Set<string>()
  private stopListening?: () => void
  /** per removed member whose kept events were looked for, the last valid seq looked after (bounded by the owners' changes) */
  private readonly keptNoted = new Map<string, number>()
  /**
   * removals this node is committing, from the read of the member's last seq until the fold has the change
   * (one per member whose removal is under way)
   */
  private readonly removing = new Map<string, RemovedEntry>()

  constructor(init: MembershipInit, components: Pick<Components, 'self' | 'store' | 'events' | 'log'>) {
    this.init = init
    this.components = components
  }

  /** Reads the founding owners and the changes held, and follows the changes ingested from now on. */
  start(): void {
    if (this.stopListening != null) return
    this.founders = readOwners(this.components.store.meta.get(OWNERS_KEY))
    this.refresh()
    for (const r of this.state.refused) this.counted.add(r.event_id)
    this.stopListening = this.components.events.listen('events:ingested', (events) => {
      const changes = events.filter((e) => e.type === MEMBERS_TYPE)
      if (changes.length === 0) return
      // A change the fold does not read (of a producer no change names owner, or stamped before the first that
      // does) changes no fold and names no author, however many a member writes: it is counted, with no refold,
      // and read once a change names its producer owner before it.
      const unread = this.founders.length === 0 ? [] : changes.filter((e) => !this.reads(e))
      for (const e of unread) {
        const detail = `membership change ${e.event_id} (seq ${e.seq}): ${e.producer} is not an owner at ${e.hlc}, so it takes no effect (it is kept, and counts only if an owner made ${e.producer} one before it)`
        this.components.events.safeDispatchEvent('peer:rejected', { detail: { reason: 'not_owner', detail, peer: e.producer, producer: e.producer } })
      }
      if (unread.length < changes.length) this.refresh(events)
    })
  }

  stop(): void {
    this.stopListening?.()
    this.stopListening = undefined
  }

  /** Recomputes the membership from the changes held; counts and logs the newly ingested ones it refused. */
  private refresh(ingested: readonly EventEnvelope[] = []): void {
    const { store, log, events } = this.components
    // Owners can be made by changes of other owners: read until the set of (ever) owners stops growing. A
    // producer's changes are read from the first change (in stamp order) that names it owner: the fold takes
    // none ordered before that, and so none of what it wrote as a member counts against MAX_CHANGES.
    const authors = new Map(this.founders.map((f) => [f, '']))
    let state = foldMembers(this.founders, [])
    let arrived: string[] = []
    for (let round = 0; round <= MAX_CHANGES; round++) {
      const rows = store.events.membershipChanges(authors, MAX_CHANGES)
      const changes: ChangeEvent[] = rows.map((r) => ({ event_id: r.event_id, producer: r.producer, seq: r.seq, hlc: r.hlc, occurred_at: r.occurred_at, payload: JSON.parse(r.payload) }))
      state = foldMembers(this.founders, changes)
      arrived = rows.map((r) => r.event_id)
      let grew = false
      for (const c of changes) {
        const p = parseChange(c.payload)
        if (!('change' in p) || p.change.op !== 'add' || p.change.role !== 'owner') continue
        const since = authors.get(p.change.peer_id)
        if (since != null && since <= c.hlc) continue
        authors.set(p.change.peer_id, c.hlc)
        grew = true
      }
      if (!grew) break
    }
    const before = this.summary()
    const accessBefore = this.access()
    this.authors = authors
    this.state = state
    this.refusedShown = lastRefused(state.refused, arrived, REFUSED_SHOWN)
    const fresh = new Set(ingested.map((e) => e.event_id))
    for (const r of state.refused) {
      if (this.counted.has(r.event_id) || !fresh.has(r.event_id)) continue
      this.counted.add(r.event_id)
      events.safeDispatchEvent('peer:rejected', { detail: { reason: r.reason, detail: `membership change ${r.event_id} (seq ${r.seq}): ${r.detail}`, peer: r.producer, producer: r.producer } })
    }
    const after = this.summary()
    if (after !== before) log.info(`membership: ${after}`, { members: this.state.members.size, removed: this.state.removed.size, source: this.source })
    this.noteKept()
    // Only a change of who may write (or up to which seq) re-schedules walks and pushes every head: a
    // change that alters nothing (a repeat, a refused one) must not make every node push to every peer.
    if (ingested.length > 0 && this.access() !== accessBefore) this.init.onChange?.()
  }

  /**
   * Logs once per removal the events this node holds of the removed member after its last valid seq. None
   * can come after the removal (they are refused before they are stored), so a removal is looked at once.
   * This node's own removal is not looked at: what it wrote before it held the removal is its own outbox,
   * taken from no one (status says `this node was removed by …` instead).
   */
  private noteKept(): void {
    const { store, log, self } = this.components
    for (const peer of this.keptNoted.keys()) if (!this.state.removed.has(peer)) this.keptNoted.delete(peer)
    for (const r of this.state.removed.values()) {
      if (r.peer_id === self || this.keptNoted.get(r.peer_id) === r.last_seq) continue
      this.keptNoted.set(r.peer_id, r.last_seq)
      const kept = store.events.seqsAfter(r.peer_id, r.last_seq)
      if (kept == null) continue
      log.warn(keptAfterRemovalText(r.peer_id, kept, r), { reason: 'kept_after_removal', producer: r.peer_id, removed_by: r.removed_by, last_seq: r.last_seq, ...kept })
    }
  }

  /** @returns who may write and up to which seq: the members with their roles, and the removed with their last valid seq */
  private access(): string {
    const members = [...this.state.members.values()].map((m) => `${m.peer_id}:${m.role}`).sort()
    const removed = [...this.state.removed.values()].map((r) => `${r.peer_id}:${r.last_seq}`).sort()
    return `${members.join(',')}|${removed.join(',')}`
  }

  private summary(): string {
    const owners = [...this.state.members.values()].filter((m) => m.role === 'owner').length
    return `${this.state.members.size - owners} members, ${owners} owners, ${this.state.removed.size} removed (${this.source})`
  }

  /** where the membership comes from now */
  get source(): MembersDocument['source'] {
    if (this.state.applied > 0) return 'changes'
    return this.init.setting != null ? 'setting' : 'open'
  }

  /** @returns whether `peer` is an owner now */
  isOwner(peer: string): boolean {
    return this.state.members.get(peer)?.role === 'owner'
  }

  /**
   * @returns whether heads of `producer` are accepted: an owner's always; once any change took effect,
   * only members'; before that, those in the members setting, or everyone without one; undefined when
   * there is no list at all (every holder of the swarm key may write)
   */
  isMember(producer: string): boolean | undefined {
    if (this.isOwner(producer)) return true
    if (this.state.applied > 0) return this.state.members.has(producer)
    if (this.init.setting != null) return this.init.setting.has(producer)
    return undefined
  }

  /**
   * @returns whether `producer` gets its own rejection series and status line: a member or a removed member
   * (bounded by the owners' changes); undefined when there is no list
   */
  isKnown(producer: string): boolean | undefined {
    const member = this.isMember(producer)
    return member == null ? undefined : member || this.state.removed.has(producer)
  }

  /**
   * @returns for a removed member, its last valid seq (its later events are refused); undefined otherwise. A
   * removal this node is committing counts from the read of that seq: an event of the member past it that
   * came meanwhile would be taken here, and refused by every other node.
   */
  removedAt(producer: string): RemovedEntry | undefined {
    const removing = this.removing.get(producer)
    if (removing != null) return removing
    return this.state.members.has(producer) ? undefined : this.state.removed.get(producer)
  }

  /** @returns whether the fold reads the change `e`: its producer is a founder, or a change names it owner no later than `e` */
  private reads(e: Pick<EventEnvelope, 'producer' | 'hlc'>): boolean {
    const since = this.authors.get(e.producer)
    return since != null && e.hlc >= since
  }

  /**
   * @returns the producers whose membership changes a fold may read (the founders and every peer a change
   * made an owner); undefined while no founder is known, when any change may come to count
   */
  changeAuthors(): string[] | undefined {
    return this.founders.length === 0 ? undefined : [...this.authors.keys()]
  }

  /**
   * @returns the members whose acknowledgements pruning waits for; undefined when every producer this node
   * knows counts (no list)
   */
  current(): string[] | undefined {
    if (this.state.applied > 0) return [...this.state.members.keys()]
    if (this.init.setting != null) return [...new Set([...this.init.setting.keys(), ...this.state.members.keys()])]
    return undefined
  }

  /**
   * Checks an event of another producer before it is stored: a removed member's event after its last
   * valid seq, a non-member's event (once the membership is known) and an event of a reserved type other
   * than cairn.members are refused.
   *
   * @returns the rejection, or undefined to accept it
   */
  checkEvent(e: EventEnvelope): Rejection | undefined {
    const removed = this.removedAt(e.producer)
    if (removed != null && e.seq > removed.last_seq) {
      return { reason: 'not_member', detail: `${e.producer} was removed by ${removed.removed_by} at ${removed.removed_at}: its events after seq ${removed.last_seq} are refused` }
    }
    if (removed == null && this.isMember(e.producer) === false) return { reason: 'not_member', detail: `${e.producer} is not a member` }
    // cairn.members is the only type of the reserved namespace; another one is no backend's and no plugin's
    // (publish refuses it) and would outlive every retention, which keeps cairn.* events for ever.
    if (isReservedType(e.type) && e.type !== MEMBERS_TYPE) {
      return { reason: 'reserved_type', detail: `${e.producer} wrote an event of type ${e.type}: the ${RESERVED_PREFIX} namespace is cairn's own, and only ${MEMBERS_TYPE} is in it` }
    }
    // A change of a producer that never was an owner is stored as its other events are, and read by no fold
    // until a change makes that producer an owner (then the fold, by the changes' stamps, decides whether it
    // counts): refusing it here would make a node that does not hold that promotion yet, which its head can
    // hide, pass over for good a change that every other node applies (start's listener counts it as not_owner).
    return undefined
  }

  /**
   * A member's events come after the membership changes it had seen: before this node takes events of
   * a producer that is not an owner, it must have processed each owner's events up to the seq that
   * producer's head acknowledges, so that a removal it saw is applied before anything it wrote after.
   *
   * @param acks the acks of the producer's head
   * @param processed per producer, the seq this node processed
   * @returns the owner and seq to wait for, or undefined when nothing is missing
   */
  waitFor(producer: string, acks: Record<string, number>, processed: Record<string, number>): { owner: string; seq: number } | undefined {
    if (this.founders.length === 0 || this.isOwner(producer)) return undefined
    for (const owner of this.authors.keys()) {
      if (owner === this.components.self || owner === producer) continue
      // A removed owner's events after its last valid seq are never taken, nor any of a peer named owner by a change
      // that did not take effect (refused, or void) and no member now: waiting for them would be forever.
      const removed = this.removedAt(owner)
      if (removed == null && this.isMember(owner) === false) continue
      const need = Math.min(Number(acks[owner] ?? 0), removed?.last_seq ?? Number.MAX_SAFE_INTEGER)
      if (Number.isSafeInteger(need) && need > (processed[owner] ?? 0)) return { owner, seq: need }
    }
    return undefined
  }

  /**
   * @returns the stored status as the membership reads it: no lag counted for what this node refuses on
   * purpose (a removed member's events after its last valid seq, a non-member's events), and for each
   * removed member but this node the events this node holds after its last valid seq (`kept_after_removal`)
   */
  withMembership<T extends { producers: Array<{ producer: string; head_seq: number; processed_seq: number; lag_events: number; lag_ms: number; kept_after_removal: KeptAfterRemoval | null }> }>(
    stored: T
  ): T {
    const producers = stored.producers.map((p) => {
      const removed = this.removedAt(p.producer)
      const top = removed != null ? Math.min(p.head_seq, removed.last_seq) : this.isMember(p.producer) === false ? p.processed_seq : p.head_seq
      const lag = Math.max(0, top - p.processed_seq)
      const kept = removed == null || p.producer === this.components.self ? undefined : this.components.store.events.seqsAfter(p.producer, removed.last_seq)
      if (lag === p.lag_events && kept == null) return p
      return { ...p, lag_events: lag, lag_ms: lag === 0 ? 0 : p.lag_ms, kept_after_removal: kept ?? null }
    })
    return { ...stored, producers }
  }

  /** @returns the membership as `cairn members list` shows it */
  document(): MembersDocument {
    const connected = this.init.connected?.() ?? new Set<string>()
    const self = this.components.self
    const view = (m: MemberEntry): MemberView => ({
      peer_id: m.peer_id,
      name: m.name ?? this.init.setting?.get(m.peer_id) ?? null,
      role: m.role,
      added_by: m.added_by,
      added_at: m.added_at,
      connected: connected.has(m.peer_id),
      self: m.peer_id === self
    })
    const members = [...this.state.members.values()].map(view)
    if (this.state.applied === 0 && this.init.setting != null) {
      for (const [peer, name] of this.init.setting) {
        if (!this.state.members.has(peer)) members.push(view({ peer_id: peer, role: 'member', name, added_by: null, added_at: null }))
      }
    }
    members.sort((a, b) => (a.role === b.role ? a.peer_id.localeCompare(b.peer_id) : a.role === 'owner' ? -1 : 1))
    const removed = [...this.state.removed.values()].map((r) => ({ ...r, name: r.name ?? this.init.setting?.get(r.peer_id) ?? null }))
    return { source: this.source, self_is_owner: this.isOwner(self), members, removed, refused: this.refusedShown, refused_total: this.state.refused.length }
  }

  /**
   * Adds a member (or changes its role or name), as a change signed by this node. Another owner made a member
   * (demoted) is removed and added back as a member in one commit: the removal records its last seq this node
   * has seen, so that a change it writes later, stamped back to when it was an owner, takes no effect (a role
   * change records no seq, and the fold orders changes by their stamps).
   *
   * @throws NotOwnerError when this node is not an owner; ValidationError for a bad peer id, role or name
   */
  async add(request: unknown): Promise<{ change: unknown; result: PublishResult }> {
    const r = v.safeParse(AddMemberSchema, request)
    if (!r.success) {
      // A missing peer_id is `required` and each unknown field `unknown_field`, each named on its own.
      const issues = toIssues(r.issues).map((i) => (i.code === 'unknown_field' ? { ...i, message: `is not a field of a membership change (only ${ADD_MEMBER_FIELDS})` } : i))
      throw new ValidationError(`Cannot add a member: ${issues.map(issueLine).join('; ')}`, issues)
    }
    const { peer_id, role, name } = r.output
    const add = { op: 'add', peer_id, role, ...(name != null ? { name } : {}) }
    // Demoting itself, this node writes the add alone: once removed it could not add itself back.
    if (role !== 'member' || !this.isOwner(peer_id) || peer_id === this.components.self) return await this.change(add)
    const lastSeq = this.components.store.producers.get(peer_id)?.head_seq ?? 0
    return await this.change({ op: 'remove', peer_id, last_seq: lastSeq }, add)
  }

  /**
   * Removes a member, recording its last seq this node has seen: its events up to it stay valid, and from
   * that read on this node takes none past it (see removedAt).
   *
   * @throws NotOwnerError when this node is not an owner; ValidationError for a bad peer id or one that is not a member
   */
  async remove(peer: string): Promise<{ change: unknown; result: PublishResult }> {
    if (this.state.applied === 0 && this.init.setting?.has(peer) === true && !this.state.members.has(peer)) {
      throw new ValidationError(
        `Cannot remove ${peer}: it is a member by the static members setting, which owners' changes do not edit. Remove it from the setting on every node and restart them; or, to switch to owners' changes, first cairn members add each member to keep: once a change is made the setting no longer counts, and ${peer} is no member any more`,
        [{ path: 'peer_id', message: `${peer} is a member by the static members setting`, code: 'static_member' }]
      )
    }
    if (typeof peer === 'string' && !this.state.members.has(peer)) {
      throw new ValidationError(`Cannot remove ${peer}: it is not a member (see cairn members list)`, [{ path: 'peer_id', message: `${peer} is not a member`, code: 'not_a_member' }])
    }
    const self = this.components.self
    if (peer === self) return await this.change({ op: 'remove', peer_id: peer, last_seq: this.components.store.outbox.lastSeq() })
    const lastSeq = this.components.store.producers.get(peer)?.head_seq ?? 0
    const entry: RemovedEntry = { peer_id: peer, last_seq: lastSeq, removed_by: self, removed_at: new Date().toISOString() }
    this.removing.set(peer, entry)
    const over = (): void => {
      if (this.removing.get(peer) === entry) this.removing.delete(peer)
    }
    try {
      const removed = await this.change({ op: 'remove', peer_id: peer, last_seq: lastSeq })
      over()
      return removed
    } catch (err) {
      over()
      // A commit that failed leaves the member as it was: a walk that stopped before its later events
      // meanwhile goes on (a refusal of the request itself comes before anything could walk).
      if (!(err instanceof ValidationError || err instanceof NotOwnerError)) this.init.onChange?.()
      throw err
    }
  }

  /** Publishes `payloads` as changes, in one commit, in order: @returns the last change and its result */
  private async change(...payloads: Array<Record<string, unknown>>): Promise<{ change: unknown; result: PublishResult }> {
    const self = this.components.self
    if (!this.isOwner(self)) {
      throw new NotOwnerError(
        this.founders.length === 0
          ? `Cannot change the membership: this node knows no owner (create the network with cairn init --new-network, or join it with --owner PEER_ID)`
          : `Cannot change the membership: this node (${self}) is not an owner; ask an owner (cairn members list shows them)`
      )
    }
    const changes = payloads.map((payload) => {
      const parsed = parseChange(payload)
      if ('issues' in parsed) {
        const issues = parsed.issues.map((line) => ({ path: '', message: line, code: 'invalid_change' }))
        throw new ValidationError(`Cannot change the membership: ${parsed.issues.join('; ')}`, issues)
      }
      const { change } = parsed
      const lastOwner = this.isOwner(change.peer_id) && [...this.state.members.values()].filter((m) => m.role === 'owner').length === 1
      if (lastOwner && (change.op === 'remove' || change.role !== 'owner')) {
        throw new ValidationError(`Cannot ${change.op === 'remove' ? 'remove' : 'demote'} ${change.peer_id}: it is the last owner; add another owner first`, [
          { path: 'peer_id', message: 'is the last owner', code: 'last_owner' }
        ])
      }
      return change
    })
    const results = await this.init.publish(changes.map((payload) => ({ type: MEMBERS_TYPE, payload })))
    // The own changes are ingested with the commit; the fold has run by the time the caller is answered.
    return { change: changes.at(-1), result: results.at(-1)! }
  }
}

/** @returns the founding owners stored at init, or none */
function readOwners(text: string | undefined): string[] {
  if (text == null) return []
  const parsed = JSON.parse(text) as unknown
  return Array.isArray(parsed) ? parsed.filter((x): x is string => typeof x === 'string') : []
}
