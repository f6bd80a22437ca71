import type { SqlDatabase } from '../runtime/sqlite.ts'

/**
 * The `state_keys` table: which state keys each applied event writes, per plugin. A key's newest event
 * (highest order_key) decides its state; an event whose every key has a newer event is superseded and may
 * be compacted away by its producer.
 */
export class StateKeysTable {
  private readonly db: SqlDatabase

  constructor(db: SqlDatabase) {
    this.db = db
  }

  /**
   * Records the keys one event writes for one plugin; recording them again changes nothing. A plugin that
   * declares no keys for the event's type records the empty key: the event is then pruned by plain
   * retention (acknowledged by every member), because that plugin's state needs it.
   */
  record(plugin: string, producer: string, seq: number, orderKey: string, keys: readonly string[]): void {
    for (const key of keys) this.db.run('INSERT OR IGNORE INTO state_keys (plugin, key, producer, seq, order_key) VALUES (?, ?, ?, ?, ?)', [plugin, key, producer, seq, orderKey])
  }

  /**
   * @returns of `producer`'s seqs in `seqs`, those that write at least one key and whose every key has a
   * newer event (by order_key, from any producer) recorded here
   */
  superseded(producer: string, seqs: readonly number[]): Set<number> {
    const out = new Set<number>()
    for (const seq of seqs) {
      const r = this.db.get<{ keys: number; open: number }>(
        `SELECT count(*) AS keys,
                sum(CASE WHEN EXISTS (SELECT 1 FROM state_keys n WHERE n.plugin = k.plugin AND n.key = k.key AND n.order_key > k.order_key) THEN 0 ELSE 1 END) AS open
           FROM state_keys k WHERE k.producer = ? AND k.seq = ? AND k.key != ''`,
        [producer, seq]
      )
      if (r != null && r.keys > 0 && r.open === 0) out.add(seq)
    }
    return out
  }

  /**
   * Forgets the keys a plugin recorded for the events still held (its rebuild records them again, as the
   * plugin declares them now). Keys of events no longer held stay: they cannot be recorded again, and an
   * own event kept as the newest of a key must stay keyed, or plain retention would prune it.
   */
  forgetPlugin(plugin: string): void {
    this.db.run('DELETE FROM state_keys WHERE plugin = ? AND EXISTS (SELECT 1 FROM events e WHERE e.producer = state_keys.producer AND e.seq = state_keys.seq)', [plugin])
  }

  /**
   * Forgets the keys `producer`'s events at `seqs` wrote (events cairn reclock withdrew): stamped ahead, they would
   * otherwise go on superseding, and so compacting away, the events that really are the newest of their keys.
   */
  forgetSeqs(producer: string, seqs: readonly number[]): void {
    for (const seq of seqs) this.db.run('DELETE FROM state_keys WHERE producer = ? AND seq = ?', [producer, seq])
  }

  /** @returns whether an event of `producer` writes any key (so that it is kept while it is the newest of one) */
  keyed(producer: string, seq: number): boolean {
    return this.db.get("SELECT 1 FROM state_keys WHERE producer = ? AND seq = ? AND key != '' LIMIT 1", [producer, seq]) != null
  }

  /** @returns whether a plugin without keys for its type applied an event of `producer` (so that plain retention also decides it) */
  unkeyed(producer: string, seq: number): boolean {
    return this.db.get("SELECT 1 FROM state_keys WHERE producer = ? AND seq = ? AND key = '' LIMIT 1", [producer, seq]) != null
  }

  /**
   * Forgets the keys of events that no longer decide anything: other producers' superseded events, and
   * `self`'s events that were pruned. The newest event of every key stays.
   *
   * @returns how many rows went
   */
  forgetSuperseded(self: string): number {
    const others = this.db.run(
      `DELETE FROM state_keys WHERE producer != ? AND (key = '' OR EXISTS (SELECT 1 FROM state_keys n WHERE n.plugin = state_keys.plugin AND n.key = state_keys.key AND n.order_key > state_keys.order_key))`,
      [self]
    ).changes
    const own = this.db.run(
      `DELETE FROM state_keys WHERE producer = ? AND seq IN (SELECT seq FROM outbox WHERE pruned_at IS NOT NULL)
         AND (key = '' OR EXISTS (SELECT 1 FROM state_keys n WHERE n.plugin = state_keys.plugin AND n.key = state_keys.key AND n.order_key > state_keys.order_key))`,
      [self]
    ).changes
    return others + own
  }
}
