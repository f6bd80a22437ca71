import * as v from 'valibot'
import { PeerIdSchema } from './envelope.ts'
import { formatIssues } from './issues.ts'

/** The event type of a membership change: signed by an owner, carried by the bus like any other event. */
export const MEMBERS_TYPE = 'cairn.members'

/** Event types under this prefix are cairn's own: no plugin may declare them and no backend may publish them. */
export const RESERVED_PREFIX = 'cairn.'

/** @returns whether an event type is in cairn's reserved namespace */
export function isReservedType(type: string): boolean {
  return type.startsWith(RESERVED_PREFIX)
}

/** The `meta` key holding the founding owners a node was told of at init (a JSON array of peer ids). */
export const OWNERS_KEY = 'owners'

/** What a member may do: an owner also changes the membership. */
export const RoleSchema = v.picklist(['member', 'owner'], 'Expected role member or owner')

/** A member's display name. */
export const MemberNameSchema = v.pipe(v.string('Expected a name'), v.minLength(1, 'Expected a non-empty name'), v.maxLength(100, 'Expected a name of at most 100 characters'))

/** The body of `POST /v1/members`: whom to add (or whose role or name to change). */
export const AddMemberSchema = v.strictObject({ peer_id: PeerIdSchema, role: v.optional(RoleSchema, 'member'), name: v.optional(MemberNameSchema) })

/** The fields of a `POST /v1/members` body, as an unknown field's issue names them. */
export const ADD_MEMBER_FIELDS = 'peer_id, role and name'

/** The payload of a `cairn.members` event. */
export const MembersChangeSchema = v.variant(
  'op',
  [
    v.strictObject({ op: v.literal('add'), peer_id: PeerIdSchema, role: RoleSchema, name: v.optional(MemberNameSchema) }),
    v.strictObject({
      op: v.literal('remove'),
      peer_id: PeerIdSchema,
      /** the removed member's last seq the owner had seen: its events up to it stay valid, later ones are refused */
      last_seq: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER))
    })
  ],
  'Expected op add or remove'
)

export type MembersChange = v.InferOutput<typeof MembersChangeSchema>

/** A `cairn.members` event as the fold reads it. */
export interface ChangeEvent {
  event_id: string
  producer: string
  seq: number
  hlc: string
  occurred_at: string
  payload: unknown
}

/** A current member. `added_by` is null for an owner this node was told of at init (a founding owner). */
export interface MemberEntry {
  peer_id: string
  role: 'member' | 'owner'
  name?: string
  added_by: string | null
  added_at: string | null
}

/** A removed member: its events up to `last_seq` are valid, later ones are refused. */
export interface RemovedEntry {
  peer_id: string
  /** its name while it was a member */
  name?: string
  last_seq: number
  removed_by: string
  removed_at: string
  /** the seq of the removing owner's change (absent for a removal still being committed) */
  removal_seq?: number
}

/**
 * Events of a removed member that a node holds after the member's last valid seq: taken before the removal
 * reached that node (its owner was cut off from the member), applied there, refused by every other node.
 */
export interface KeptAfterRemoval {
  count: number
  from_seq: number
  to_seq: number
}

/**
 * @returns what holding a removed member's events after its last valid seq means, for the log and the
 * status reason
 */
export function keptAfterRemovalText(producer: string, kept: KeptAfterRemoval, removed: Pick<RemovedEntry, 'last_seq' | 'removed_by'>): string {
  return `this node holds ${kept.count} event(s) of ${producer} after its last valid seq ${removed.last_seq} (seq ${kept.from_seq}..${kept.to_seq}): they were taken and applied here before the removal by ${removed.removed_by}, whose owner had not seen them, arrived; every other node refuses them, and they stay here (see docs/operations.md, "Members")`
}

/** A change the fold did not apply, and why. */
export interface RefusedChange {
  event_id: string
  producer: string
  seq: number
  reason: 'not_owner' | 'invalid_members_change' | 'last_owner' | 'not_member'
  detail: string
}

/**
 * @returns the last `n` of the changes the fold refused in the order they arrived here (`arrived`: event ids,
 * first to arrive first), in that order: the newest problems, a change stamped back in time among them (the fold
 * orders by stamps, so a backdated change would sort before every later-stamped refusal)
 */
export function lastRefused(refused: readonly RefusedChange[], arrived: readonly string[], n: number): RefusedChange[] {
  const at = new Map(arrived.map((id, i) => [id, i]))
  return [...refused].sort((a, b) => (at.get(a.event_id) ?? -1) - (at.get(b.event_id) ?? -1)).slice(-n)
}

/** The membership after every change, in the order the fold applied them. */
export interface MembershipState {
  members: Map<string, MemberEntry>
  removed: Map<string, RemovedEntry>
  refused: RefusedChange[]
  /** how many changes took effect: 0 means the network never used the membership changes */
  applied: number
}

/** @returns whether change `a` orders before `b`: by (hlc, producer, event_id), the same on every node */
function before(a: ChangeEvent, b: ChangeEvent): number {
  if (a.hlc !== b.hlc) return a.hlc < b.hlc ? -1 : 1
  if (a.producer !== b.producer) return a.producer < b.producer ? -1 : 1
  return a.event_id < b.event_id ? -1 : a.event_id > b.event_id ? 1 : 0
}

/** @returns a change's payload checked, or the issues that make it invalid */
export function parseChange(payload: unknown): { change: MembersChange } | { issues: string[] } {
  const r = v.safeParse(MembersChangeSchema, payload)
  return r.success ? { change: r.output } : { issues: formatIssues(r.issues, 'payload') }
}

/**
 * Folds membership changes into the membership, deterministically: the changes are applied in
 * (hlc, producer, event_id) order, so every node that holds the same changes computes the same members,
 * whatever order they arrived in. A change takes effect only when its producer is an owner at that point of
 * the order; a change that would leave no owner (removing or demoting the last one) does not take effect;
 * an add of a removed peer re-admits it. A removal's last valid seq is final: a change of the removed owner
 * past it takes no effect even when it orders before the removal (made at about the same time, unseen by the
 * removing owner), since nodes that got the removal first refuse it and never hold it, and a node that took it
 * earlier must reach the same members as they do.
 *
 * @param founders the owners every node was told of at init (`cairn init --new-network` or `--owner`)
 * @param changes every `cairn.members` event of a producer who is or was an owner, in any order
 * @returns the members, the removed peers with their last valid seq, and the changes refused
 * @example
 * ```ts
 * const state = foldMembers([owner], changes)
 * state.members.has(peer) // whether peer's heads are accepted
 * ```
 */
export function foldMembers(founders: readonly string[], changes: readonly ChangeEvent[]): MembershipState {
  const sorted = [...changes].sort(before)
  // A pass that reaches a removal voiding changes it applied before starts over without them. A change voided by a
  // removal that is void itself (its owner removed before it, by a removal it had not seen) is not void: a node
  // that refused that removal never held it, and applies the change. Such voids are conditional for the first
  // passes; a change voided after them stays voided, and each such pass voids at least one more (a change it
  // applied, so not voided for good before): at most 2 × (changes + 1) passes in all.
  const voided = new Map<ChangeEvent, Void>()
  const conditional = sorted.length + 1
  for (let pass = 0; ; pass++) {
    const folded = foldOnce(founders, sorted, voided)
    if (folded.voiding == null) return folded.state
    const { changes: past, by, detail } = folded.voiding
    for (const c of past) voided.set(c, { by: pass < conditional ? by : undefined, detail })
  }
}

/** Why a change is void: the removal that voided it (undefined: for good, whatever becomes of that removal), and what to say. */
interface Void {
  by: ChangeEvent | undefined
  detail: string
}

/**
 * @returns why `c` is void, or undefined when it is not: voided by a removal that is not void itself (a removal
 * orders after every change it voids, so the chain ends)
 */
function voidOf(c: ChangeEvent, voided: ReadonlyMap<ChangeEvent, Void>): string | undefined {
  // Followed without recursion, however long the chain: each link's voider, until one void for good or not void.
  const first = voided.get(c)
  let links = 0
  // At most one link per void: each change orders before the removal that voids it, so no chain comes back to
  // where it started; the bound keeps a fold from looping should one ever do.
  for (let v = first; v != null && links <= voided.size; v = v.by == null ? undefined : voided.get(v.by)) {
    links++
    if (v.by == null) break
  }
  // The last link is void: for good, or by a removal that is not void. Each link before it is void when the next
  // is not: the first is void when the chain has an odd number of links.
  return first != null && links % 2 === 1 ? first.detail : undefined
}

/**
 * One pass of the fold over `sorted`, the changes in fold order, `voided` among them refused.
 *
 * @returns the membership, or the changes of a removed owner past its last valid seq that the pass had applied
 * before it reached the removal (the fold starts over without them)
 */
function foldOnce(
  founders: readonly string[],
  sorted: readonly ChangeEvent[],
  voided: ReadonlyMap<ChangeEvent, Void>
): { state: MembershipState; voiding?: undefined } | { voiding: { changes: ChangeEvent[]; by: ChangeEvent; detail: string } } {
  const members = new Map<string, MemberEntry>()
  for (const o of founders) members.set(o, { peer_id: o, role: 'owner', added_by: null, added_at: null })
  const removed = new Map<string, RemovedEntry>()
  const refused: RefusedChange[] = []
  /** per producer, the changes of it that took effect in this pass */
  const appliedOf = new Map<string, ChangeEvent[]>()
  let applied = 0
  const refuse = (c: ChangeEvent, reason: RefusedChange['reason'], detail: string): void => {
    refused.push({ event_id: c.event_id, producer: c.producer, seq: c.seq, reason, detail })
  }
  const take = (c: ChangeEvent): void => {
    applied++
    const of = appliedOf.get(c.producer)
    if (of == null) appliedOf.set(c.producer, [c])
    else of.push(c)
  }
  for (const c of sorted) {
    const voidedBy = voidOf(c, voided)
    if (voidedBy != null) {
      refuse(c, 'not_member', voidedBy)
      continue
    }
    const parsed = parseChange(c.payload)
    if ('issues' in parsed) {
      refuse(c, 'invalid_members_change', parsed.issues.join('; '))
      continue
    }
    if (members.get(c.producer)?.role !== 'owner') {
      refuse(c, 'not_owner', `${c.producer} is not an owner at ${c.hlc}`)
      continue
    }
    const { change } = parsed
    const owners = [...members.values()].filter((m) => m.role === 'owner').length
    const lastOwner = members.get(change.peer_id)?.role === 'owner' && owners === 1
    if (change.op === 'add' && lastOwner && change.role !== 'owner') {
      refuse(c, 'last_owner', `making ${change.peer_id} a member would leave the network without an owner`)
      continue
    }
    if (change.op === 'add') {
      members.set(change.peer_id, { peer_id: change.peer_id, role: change.role, name: change.name, added_by: c.producer, added_at: c.occurred_at })
      removed.delete(change.peer_id)
      take(c)
      continue
    }
    if (lastOwner) {
      refuse(c, 'last_owner', `removing ${change.peer_id} would leave the network without an owner`)
      continue
    }
    const name = members.get(change.peer_id)?.name ?? removed.get(change.peer_id)?.name
    members.delete(change.peer_id)
    // Two removals of one peer: the later in the order records the seq, as it saw the most.
    const lastSeq = Math.max(change.last_seq, removed.get(change.peer_id)?.last_seq ?? 0)
    removed.set(change.peer_id, {
      peer_id: change.peer_id,
      ...(name != null ? { name } : {}),
      last_seq: lastSeq,
      removed_by: c.producer,
      removed_at: c.occurred_at,
      removal_seq: c.seq
    })
    // The changes it voids, the removal itself not among them (an owner removing itself writes it past its last
    // seq): each orders before its voider, so no chain of voids comes back to a change it started from.
    const past = (appliedOf.get(change.peer_id) ?? []).filter((p) => p.seq > lastSeq)
    take(c)
    if (past.length > 0) {
      return { voiding: { changes: past, by: c, detail: `${change.peer_id} was removed by ${c.producer} at ${c.occurred_at}: its changes after seq ${lastSeq} are void` } }
    }
  }
  return { state: { members, removed, refused, applied } }
}
