import { CID } from 'multiformats/cid'
import type { SqlDatabase } from '../runtime/sqlite.ts'
import type { SqliteBlockstore } from '../store/blockstore.ts'
import type { Outbox } from '../publish/outbox.ts'
import { readDirectoryNode } from '../unixfs/hamt.ts'
import { isDagPb } from '../unixfs/tree.ts'

/** What one housekeeping run did; the last one is kept in `meta` and shown in status. */
export interface HousekeepingResult {
  at: string
  duration_ms: number
  pruned_files: number
  /** members whose acks held pruning back */
  held_back_by: string[]
  blocks_deleted: number
  reclaimed_bytes: number
  events_deleted: number
  error?: string
}

export interface HousekeeperInit {
  db: SqlDatabase
  blocks: SqliteBlockstore
  outbox: Outbox
  self: string
  retention: number
  retentionMax: number
  eventsRetention?: number
  /** the members whose acks count; undefined means every producer this node knows */
  members: () => string[] | undefined
  /** the highest own seq that this node's plugins have processed */
  processed: () => number
  /** called with the new head after pruning */
  announce: (head: Uint8Array) => void
  now?: () => number
}

/**
 * Prunes this node's own event files once they are older than the retention window and every member's
 * acks cover them (or they pass the hard maximum age), then garbage-collects blocks that no root references.
 */
export class Housekeeper {
  private readonly init: HousekeeperInit
  private running: Promise<HousekeepingResult> | undefined

  constructor (init: HousekeeperInit) {
    this.init = init
  }

  /** Runs once; a call while a run is under way joins it. */
  async run (): Promise<HousekeepingResult> {
    this.running ??= this.runOnce().finally(() => { this.running = undefined })
    return await this.running
  }

  private async runOnce (): Promise<HousekeepingResult> {
    const { db } = this.init
    const now = this.init.now?.() ?? Date.now()
    const started = Date.now()
    const result: HousekeepingResult = { at: new Date(now).toISOString(), duration_ms: 0, pruned_files: 0, held_back_by: [], blocks_deleted: 0, reclaimed_bytes: 0, events_deleted: 0 }
    try {
      const { seqs, heldBackBy } = this.prunable(now)
      result.held_back_by = heldBackBy
      const pruned = await this.init.outbox.prune(seqs)
      result.pruned_files = pruned.removed
      if (pruned.head != null) this.init.announce(pruned.head)
      const gc = this.collectGarbage()
      result.blocks_deleted = gc.blocks
      result.reclaimed_bytes = gc.bytes
      if (this.init.eventsRetention != null) {
        result.events_deleted = db.run("DELETE FROM events WHERE received_at < ? AND state != 'pending'", [now - this.init.eventsRetention]).changes
      }
    } catch (err) {
      result.error = (err as Error).message
    }
    result.duration_ms = Date.now() - started
    db.run("INSERT INTO meta (key, value) VALUES ('housekeeping', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", [JSON.stringify(result)])
    db.run("INSERT INTO meta (key, value) VALUES ('reclaimed_bytes', ?) ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + excluded.value", [String(result.reclaimed_bytes)])
    return result
  }

  /** @returns the own seqs that may go, and which members hold the others back */
  private prunable (now: number): { seqs: number[], heldBackBy: string[] } {
    const { db, self, retention, retentionMax } = this.init
    const candidates = db.all<{ seq: number, created_at: number }>('SELECT seq, created_at FROM outbox WHERE pruned_at IS NULL AND created_at < ? ORDER BY seq', [now - retention])
    if (candidates.length === 0) return { seqs: [], heldBackBy: [] }
    const known = new Map(db.all<{ producer: string, acks: string, head_received_at: number | null }>('SELECT producer, acks, head_received_at FROM producers WHERE producer != ?', [self])
      .map((r) => [r.producer, r]))
    const members = (this.init.members() ?? [...known.keys()]).filter((m) => m !== self)
    let floor = Number.MAX_SAFE_INTEGER
    const acksOf = new Map<string, number>()
    for (const m of members) {
      const row = known.get(m)
      // A member silent for longer than the hard maximum no longer holds pruning back.
      if (row?.head_received_at != null && now - row.head_received_at > retentionMax) continue
      let ack = 0
      try { ack = Number((JSON.parse(row?.acks ?? '{}') as Record<string, number>)[self] ?? 0) } catch {}
      acksOf.set(m, ack)
      floor = Math.min(floor, ack)
    }
    const processed = this.init.processed()
    const seqs = candidates.filter((c) => c.created_at < now - retentionMax || (c.seq <= floor && c.seq <= processed)).map((c) => c.seq)
    const kept = candidates.filter((c) => !seqs.includes(c.seq))
    const heldBackBy = kept.length === 0 ? [] : [...acksOf].filter(([, ack]) => ack < kept[0].seq).map(([m]) => m)
    return { seqs, heldBackBy }
  }

  /** Deletes blocks that no root reaches: own outbox root and every producer's synced and head roots. */
  private collectGarbage (): { blocks: number, bytes: number } {
    const { db, blocks } = this.init
    // Only blocks present before marking may go: a block fetched or written meanwhile survives this run.
    const before = blocks.db.all<{ cid: string, n: number }>('SELECT cid, length(bytes) AS n FROM blocks')
    const roots = new Set<string>()
    for (const r of db.all<{ path: string, cid: string }>("SELECT path, cid FROM outbox_dirs WHERE path = ''")) roots.add(r.cid)
    for (const r of db.all<{ synced_root: string | null, head_root: string | null }>('SELECT synced_root, head_root FROM producers')) {
      if (r.synced_root != null) roots.add(r.synced_root)
      if (r.head_root != null) roots.add(r.head_root)
    }
    const live = new Set<string>()
    const stack = [...roots].map((c) => CID.parse(c))
    while (stack.length > 0) {
      const cid = stack.pop()!
      const key = cid.toString()
      if (live.has(key)) continue
      live.add(key)
      if (!isDagPb(cid)) continue
      const bytes = blocks.getSync(cid)
      if (bytes == null) continue
      try {
        const node = readDirectoryNode(bytes)
        for (const e of node.entries) stack.push(e.cid)
        for (const s of node.shards) stack.push(s.cid)
      } catch {
        // not a directory: a leaf
      }
    }
    let count = 0
    let bytes = 0
    blocks.db.transaction(() => {
      for (const b of before) {
        if (live.has(b.cid)) continue
        blocks.db.run('DELETE FROM blocks WHERE cid = ?', [b.cid])
        count++
        bytes += b.n
      }
    })
    if (count > 0) blocks.db.exec('PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE)')
    return { blocks: count, bytes }
  }
}
