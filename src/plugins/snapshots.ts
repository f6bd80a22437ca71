import type { PrivateKey } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import type { Components } from '../node/components.ts'
import { MAX_SNAPSHOT_BYTES, SNAPSHOT_NAME, SNAPSHOTS_DIR, signSnapshot, snapshotContent, verifySnapshot, type Snapshot } from '../model/snapshot.ts'
import { canonicalJson } from '../model/canonical.ts'
import { readDirectoryNode } from '../unixfs/hamt.ts'
import { CID as CIDClass } from 'multiformats/cid'
import { InvalidSnapshotError, ValidationError } from '../errors.ts'
import { tablesOf } from './migrate.ts'
import type { Plugin } from './types.ts'

/** Fetches a block from the local store or the peers. */
export type SnapshotBlockGetter = (cid: CID, options: { signal: AbortSignal }) => Promise<Uint8Array>

/** How snapshots are written and which are trusted. */
export interface SnapshotsInit {
  plugins: readonly Plugin[]
  privateKey: PrivateKey
  /** puts the signed file into this node's outbox tree (Outbox.putSnapshot) */
  put: (plugin: string, bytes: Uint8Array, vector: Record<string, number>) => Promise<{ cid: string }>
  getBlock: SnapshotBlockGetter
  /** the producers whose snapshots this node loads (--snapshot-from) */
  trusted: () => readonly string[]
  /** how long one block may take */
  fetchTimeout: number
  /** tells the plugin host that a plugin's state was replaced */
  loaded: () => void
}

/** What the snapshot service uses of the node. */
export type SnapshotsComponents = Pick<Components, 'self' | 'store' | 'log' | 'metrics' | 'events'>

/** A snapshot this node wrote. */
export interface WrittenSnapshot {
  plugin: string
  cid: string
  vector: Record<string, number>
  bytes: number
}

/** Where a plugin's state comes from, as status shows it. */
export interface PluginStateStatus {
  plugin: string
  state: string
  /** set when trusted snapshots of the same vector disagree: an alarm */
  disagreement?: string
}

/**
 * @param setting `--snapshot-from`: `members`, or comma-separated peer ids
 * @param membership who may write now (a removed member and a non-member are refused while there is a list)
 * @returns the producers whose snapshots this node loads: the current members, or the named peers that the
 * members list does not refuse (a snapshot replaces a plugin's tables: the owners' removal outranks the setting)
 */
export function trustedForSnapshots(setting: string, membership: { current: () => string[] | undefined; isMember: (peer: string) => boolean | undefined }): string[] {
  if (setting === 'members') return membership.current() ?? []
  return setting
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '' && membership.isMember(p) !== false)
}

/** @returns whether every type of the plugin declares state keys (compaction alone keeps its state whole) */
export const fullyKeyed = (plugin: Plugin): boolean => Object.values(plugin.handles).every((h) => h.keys != null)

/** @returns whether a plugin takes part in snapshots (it did not opt out with `snapshot: false`) */
export const snapshotting = (plugin: Plugin): boolean => plugin.snapshot !== false

/**
 * Writes this node's signed snapshots of its plugins' tables, and loads a trusted producer's snapshot into
 * a plugin whose state misses history that neither this node's log nor compaction covers: the gaps
 * recorded before it joined (horizon) or lost while it was away, for a plugin with types without keys.
 */
export class Snapshots {
  private readonly components: SnapshotsComponents
  private readonly init: SnapshotsInit
  private running: Promise<void> | undefined
  private readonly abort = new AbortController()
  /** per plugin, why no snapshot could be loaded yet (the last attempt) */
  readonly problems = new Map<string, string>()

  constructor(components: SnapshotsComponents, init: SnapshotsInit) {
    this.components = components
    this.init = init
  }

  stop(): void {
    this.abort.abort()
  }

  /**
   * Writes a snapshot of one plugin (or of every plugin that takes part: those that cannot be written now are
   * logged and passed over) into this node's outbox tree.
   *
   * @throws ValidationError for an unknown or opted-out plugin, or a named one whose state is not whole here:
   * events not processed yet, or gaps no snapshot covered
   */
  async write(name?: string): Promise<WrittenSnapshot[]> {
    const { plugins } = this.init
    let chosen: Plugin[]
    if (name != null) {
      const p = plugins.find((x) => x.name === name)
      if (p == null) throw new ValidationError(`Cannot snapshot plugin ${name}: no such plugin is loaded (loaded: ${plugins.map((x) => x.name).join(', ') || 'none'})`)
      if (!snapshotting(p)) throw new ValidationError(`Cannot snapshot plugin ${name}: it opted out of snapshots (snapshot: false)`)
      chosen = [p]
    } else chosen = plugins.filter(snapshotting)
    const out: WrittenSnapshot[] = []
    for (const plugin of chosen) {
      let bytes: Uint8Array
      let snapshot: Snapshot
      try {
        snapshot = this.capture(plugin).snapshot
        bytes = await signSnapshot(snapshot, this.init.privateKey)
        if (bytes.length > MAX_SNAPSHOT_BYTES)
          throw new ValidationError(
            `Cannot snapshot plugin ${plugin.name}: its tables make ${bytes.length} bytes, over the ${MAX_SNAPSHOT_BYTES} a snapshot may hold (declare state keys for its types instead)`
          )
      } catch (err) {
        if (name != null || (err as Error).name !== 'ValidationError') throw err
        this.components.log.warn(`snapshot not written: ${(err as Error).message}`, { plugin: plugin.name, reason: 'snapshot_not_written' })
        continue
      }
      const { cid } = await this.init.put(plugin.name, bytes, snapshot.vector)
      this.components.log.info(`wrote a snapshot of ${plugin.name}`, { plugin: plugin.name, cid, bytes: bytes.length, vector: snapshot.vector })
      out.push({ plugin: plugin.name, cid, vector: snapshot.vector, bytes: bytes.length })
    }
    return out
  }

  /** @returns the plugin's tables and the vector they reflect, read in one synchronous step (no apply runs in between) */
  private capture(plugin: Plugin): { snapshot: Snapshot } {
    const { store, self } = this.components
    const owned = tablesOf(plugin)
    const untold = store.snapshots.absent(owned)
    if (untold.length > 0)
      throw new ValidationError(
        `Cannot snapshot plugin ${plugin.name}: ${untold.join(', ')}, which its migrations create, is not in cairn.db (renamed or dropped by a later migration), so a snapshot could not tell which tables are the plugin's; give the plugin snapshot: false`
      )
    const uncarried = store.snapshots.uncarried(owned)
    if (uncarried.length > 0) {
      throw new ValidationError(
        `Cannot snapshot plugin ${plugin.name}: ${uncarried.join(', ')} ${uncarried.length > 1 ? 'are contentless full-text tables' : 'is a contentless full-text table'} (content=''), whose index a snapshot cannot carry; give the plugin snapshot: false, or keep the text in a table of its own (content=TABLE)`
      )
    }
    const pending = store.events.pendingCount()
    if (pending > 0) throw new ValidationError(`Cannot snapshot plugin ${plugin.name}: ${pending} event(s) are not processed yet; try again once the backlog is 0`)
    // A dead letter or held event sits inside the vector but not in the tables: a node loading the snapshot
    // would pass it over for ever, while here a replay or a newer plugin version still applies it.
    const unapplied = store.pluginState.unappliedCount(plugin.name)
    if (unapplied > 0) {
      throw new ValidationError(
        `Cannot snapshot plugin ${plugin.name}: ${unapplied} event(s) it has not applied (dead letters or held events) are within the vector, and a node loading the snapshot would never apply them; replay them (cairn replay --dead) or load a version of the plugin that reads them first`
      )
    }
    const missing = this.uncovered(plugin)
    if (missing.length > 0) {
      throw new ValidationError(
        `Cannot snapshot plugin ${plugin.name}: its state here misses ${missing.map((g) => `${g.producer} seq ${g.from_seq}..${g.to_seq}${g.gaps > 1 ? ` (${g.gaps} gaps)` : ''}`).join(', ')} (pruned before this node had them, and no snapshot covered them)`
      )
    }
    const vector = Object.fromEntries(Object.entries(store.producers.processed()).filter(([, seq]) => seq > 0))
    vector[self] = store.outbox.lastSeq()
    const snapshot: Snapshot = {
      format: 'cairn.snapshot/1',
      plugin: plugin.name,
      producer: self,
      created_at: new Date().toISOString(),
      migrations: (plugin.migrations ?? []).length,
      vector,
      tables: store.snapshots.dump(owned)
    }
    // The snapshot format names tables and columns by plain identifiers, and a reader's JSON object takes no
    // member of Object.prototype's names: other nodes refuse (or misread) any other name.
    const plain = (name: string): boolean => SNAPSHOT_NAME.test(name) && !['__proto__', 'constructor', 'prototype'].includes(name)
    const unnamed = [
      ...owned.filter((t) => !plain(t)).map((t) => `table ${JSON.stringify(t)}`),
      ...Object.entries(snapshot.tables).flatMap(([t, { columns }]) => columns.filter((c) => !plain(c)).map((c) => `column ${JSON.stringify(c)} of ${t}`))
    ]
    if (unnamed.length > 0)
      throw new ValidationError(
        `Cannot snapshot plugin ${plugin.name}: a snapshot names tables and columns by letters, digits and underscores only (and none of __proto__, constructor, prototype), and ${unnamed.join(', ')} is not; rename it in a migration, or give the plugin snapshot: false`
      )
    return { snapshot }
  }

  /**
   * @returns per producer, the gaps (horizon or lost) that the plugin's state misses: none for a fully keyed
   * plugin, or those above its loaded snapshot's vector (their lowest seq, highest seq and count)
   */
  private uncovered(plugin: Plugin): Array<{ producer: string; from_seq: number; to_seq: number; gaps: number }> {
    if (fullyKeyed(plugin)) return []
    const { store } = this.components
    return store.gaps.missedPast(store.snapshots.loaded(plugin.name)?.vector ?? {})
  }

  /**
   * @returns per producer, the seq up to which the loaded snapshots cover its lost gaps for every plugin that
   * needs full history (a gap ending at or before it is no alarm), 0 when none does. Each needer's loaded
   * vector (an entry per producer) is read once here, so one status call reads it once, not per producer.
   */
  coverage(): (producer: string) => number {
    const needers = this.init.plugins.filter((p) => !fullyKeyed(p))
    if (needers.length === 0) return () => 0
    const vectors = needers.map((p) => this.components.store.snapshots.loaded(p.name)?.vector ?? {})
    return (producer) => Math.min(...vectors.map((v) => v[producer] ?? 0))
  }

  /** @returns per plugin, where its state comes from, for status */
  states(): PluginStateStatus[] {
    const { store } = this.components
    return this.init.plugins.map((plugin) => {
      const loaded = store.snapshots.loaded(plugin.name)
      const missing = this.uncovered(plugin)
      const from = loaded == null ? undefined : `state from snapshot of ${loaded.producer} at ${canonicalJson(loaded.vector)}`
      if (missing.length === 0) return { plugin: plugin.name, state: from ?? (fullyKeyed(plugin) ? 'whole (compacted log)' : 'whole (full history)') }
      const horizon = `state from the retention horizon (history before ${missing.map((g) => `${g.producer} seq ${g.to_seq + 1}`).join(', ')} is not in it)`
      if (!snapshotting(plugin)) return { plugin: plugin.name, state: `${horizon}; opted out of snapshots` }
      const problem = this.problems.get(plugin.name)
      return {
        plugin: plugin.name,
        state: `${horizon}; waiting for a snapshot${problem != null ? `: ${problem}` : ''}`,
        disagreement: problem?.startsWith('snapshots disagree') === true ? problem : undefined
      }
    })
  }

  /** Loads snapshots where plugins need them; a call while one runs joins it. */
  async bootstrap(): Promise<void> {
    this.running ??= this.bootstrapAll().finally(() => {
      this.running = undefined
    })
    await this.running
  }

  private async bootstrapAll(): Promise<void> {
    for (const plugin of this.init.plugins) {
      if (this.abort.signal.aborted) return
      if (!snapshotting(plugin)) continue
      const missing = this.uncovered(plugin)
      if (missing.length === 0) {
        this.problems.delete(plugin.name)
        continue
      }
      try {
        const problem = await this.bootstrapOne(plugin, missing)
        if (problem == null) this.problems.delete(plugin.name)
        else this.problems.set(plugin.name, problem)
      } catch (err) {
        this.problems.set(plugin.name, (err as Error).message)
      }
    }
  }

  /** @returns why nothing was loaded, or undefined when a snapshot was */
  private async bootstrapOne(plugin: Plugin, missing: Array<{ producer: string; to_seq: number }>): Promise<string | undefined> {
    const { store, log, self } = this.components
    const trusted = this.init.trusted().filter((p) => p !== self)
    if (trusted.length === 0) return 'no producer is trusted for snapshots (--snapshot-from)'
    const owned = tablesOf(plugin)
    const uncarried = store.snapshots.uncarried(owned)
    if (uncarried.length > 0) return `no snapshot can carry the index of its contentless full-text table(s) ${uncarried.join(', ')}`
    const untold = store.snapshots.absent(owned)
    if (untold.length > 0) return `its migrations create ${untold.join(', ')}, which is not in cairn.db (renamed or dropped by a later migration): no snapshot can be told complete`
    const found: Snapshot[] = []
    const unchecked: string[] = []
    for (const producer of trusted) {
      let snapshot: Snapshot | undefined
      try {
        snapshot = await this.fetch(producer, plugin.name)
      } catch (err) {
        const reason = (err as { reason?: string }).reason
        if (reason == null) {
          log.debug(`no snapshot of ${plugin.name} from ${producer}: ${(err as Error).message}`, { plugin: plugin.name, producer })
          continue
        }
        this.components.events.safeDispatchEvent('peer:rejected', { detail: { reason, detail: (err as Error).message, peer: producer } })
        log.warn((err as Error).message, { plugin: plugin.name, producer, reason })
        continue
      }
      if (snapshot == null) continue
      // Tables made by other migrations (another version of the plugin) would leave columns or tables that
      // this version fills unfilled for every event the vector passes over.
      const migrations = (plugin.migrations ?? []).length
      if (snapshot.migrations != null && snapshot.migrations !== migrations) {
        unchecked.push(`the snapshot of ${producer} was made by a version of ${plugin.name} with ${snapshot.migrations} migration(s); this node runs ${migrations}`)
        continue
      }
      // Loaded, a table it lacks would be left empty for every event the vector passes over.
      const lacking = store.snapshots.lacking(owned, snapshot.tables)
      if (lacking.length > 0) {
        const why = `the snapshot of ${producer} lacks table(s) ${lacking.join(', ')} of ${plugin.name} (made by another version of the plugin, or of cairn)`
        log.warn(`not loading a snapshot of ${plugin.name}: ${why}`, { plugin: plugin.name, producer, reason: 'snapshot_incomplete' })
        unchecked.push(why)
        continue
      }
      // Events up to the vector are passed over for ever once loaded: a vector beyond a producer's head
      // would silence that producer here, so it must stay within the heads this node has. Past them, it
      // waits: the writer may just have a newer head (signed by that producer) that has not reached this node.
      const headSeq = (p: string): number | undefined => (p === self ? store.outbox.lastSeq() : store.producers.get(p)?.head_seq)
      const beyond = Object.entries(snapshot.vector).find(([p, seq]) => seq > (headSeq(p) ?? 0))
      if (beyond == null) {
        found.push(snapshot)
        continue
      }
      const [p, seq] = beyond
      const head = headSeq(p)
      const why = `the snapshot of ${producer} claims seq ${seq} of ${p}, ${head == null ? `and this node has no head of ${p} yet` : `beyond that producer's head here (seq ${head})`}`
      log.info(`not loading a snapshot of ${plugin.name} yet: ${why}`, { plugin: plugin.name, producer, reason: 'snapshot_ahead' })
      unchecked.push(why)
    }
    const covering = found.filter((s) => missing.every((g) => (s.vector[g.producer] ?? 0) >= g.to_seq))
    if (covering.length === 0) {
      if (unchecked.length > 0) return `cannot use one yet: ${unchecked.join('; ')}`
      return found.length === 0 ? `no trusted producer (${trusted.join(', ')}) publishes a snapshot of it yet` : 'no trusted snapshot covers the missing history yet'
    }
    // Snapshots of the same vector must say the same; where two disagree, neither is used.
    const byVector = new Map<string, Snapshot[]>()
    for (const s of covering) {
      const key = canonicalJson(s.vector)
      byVector.set(key, [...(byVector.get(key) ?? []), s])
    }
    const agreeing: Snapshot[] = []
    const disagreements: string[] = []
    for (const group of byVector.values()) {
      if (new Set(group.map(snapshotContent)).size > 1) disagreements.push(`${group.map((s) => s.producer).join(' and ')} disagree at ${canonicalJson(group[0].vector)}`)
      else agreeing.push(group[0])
    }
    for (const d of disagreements) log.warn(`snapshots of ${plugin.name} disagree: ${d}; not loading either`, { plugin: plugin.name, reason: 'snapshot_disagreement' })
    if (agreeing.length === 0) return `snapshots disagree: ${disagreements.join('; ')}`
    const total = (s: Snapshot): number => Object.values(s.vector).reduce((a, b) => a + b, 0)
    const best = agreeing.sort((a, b) => total(b) - total(a))[0]
    store.transaction(
      () => {
        store.snapshots.replace(owned, best.tables, { plugin: plugin.name, producer: best.producer, vector: best.vector, created_at: best.created_at }, Date.now())
        store.pluginState.rewind(plugin.name)
      },
      { durable: true }
    )
    log.info(`loaded the state of ${plugin.name} from the snapshot of ${best.producer} at ${canonicalJson(best.vector)}`, { plugin: plugin.name, producer: best.producer, reason: 'snapshot_loaded' })
    this.init.loaded()
    return disagreements.length > 0 ? `snapshots disagree: ${disagreements.join('; ')}` : undefined
  }

  /**
   * @returns the verified snapshot of `plugin` in `producer`'s tree (its head's root), or undefined when it has none
   * @throws InvalidSnapshotError when there is one and it does not verify; Error when a block cannot be fetched
   */
  private async fetch(producer: string, plugin: string): Promise<Snapshot | undefined> {
    const row = this.components.store.producers.get(producer)
    if (row?.head_root == null) return undefined
    const get = async (cid: CID): Promise<Uint8Array> => await this.init.getBlock(cid, { signal: AbortSignal.any([AbortSignal.timeout(this.init.fetchTimeout), this.abort.signal]) })
    const root = readDirectoryNode(await get(CIDClass.parse(row.head_root)))
    const dir = root.entries.find((e) => e.name === SNAPSHOTS_DIR)
    if (dir == null) return undefined
    const file = readDirectoryNode(await get(dir.cid)).entries.find((e) => e.name === `${plugin}.json`)
    if (file == null) return undefined
    if (file.size > MAX_SNAPSHOT_BYTES) throw new InvalidSnapshotError('oversized_snapshot', `Cannot use the snapshot of ${plugin} from ${producer}: ${file.size} bytes is over ${MAX_SNAPSHOT_BYTES}`)
    return await verifySnapshot(await get(file.cid), producer, plugin)
  }
}
