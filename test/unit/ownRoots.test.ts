import { describe, expect, test } from 'bun:test'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { MIGRATIONS, migrate } from '../../src/store/migrations.ts'
import { OWN_ROOTS_KEPT, OutboxTable } from '../../src/store/outbox.ts'

const at = (ms: number): string => `${1_800_000_000_000 + ms}-0000`

describe('the heads this node signed', () => {
  test('tell another history only at a seq it committed after the head was signed, with a root it never signed there', async () => {
    const db = await openDatabase(':memory:')
    // A database that published seqs up to 5 before migration 10.
    migrate(db, MIGRATIONS.slice(0, 9))
    for (let seq = 1; seq <= 5; seq++) {
      db.run("INSERT INTO outbox (seq, event_id, bucket, name, cid, size, created_at) VALUES (?, ?, '2026-11-30/04', ?, 'bafy', 1, 0)", [seq, `e${seq}`, `n${seq}`])
    }
    migrate(db)
    const outbox = new OutboxTable(db)
    // Seq 5 was signed before: it cannot be told.
    outbox.recordRoot(5, 'root-5b', at(50), true)
    expect(outbox.otherHistory(5, 'root-5a', at(40))).toBe(false)
    outbox.recordRoot(6, 'root-6', at(60), true)
    outbox.recordRoot(6, 'root-6-pruned', at(70), false)
    expect({
      // another root, signed before this node's commit at seq 6: another history
      before: outbox.otherHistory(6, 'other', at(55)),
      // signed after it: this node re-signed seq 6 (a prune, a snapshot) in a part of its history this database lost
      after: outbox.otherHistory(6, 'other', at(65)),
      ours: [outbox.otherHistory(6, 'root-6', at(1)), outbox.otherHistory(6, 'root-6-pruned', at(1))],
      unsigned: outbox.otherHistory(7, 'root-7', at(1))
    }).toEqual({ before: true, after: false, ours: [false, false], unsigned: false })
    // A seq whose only head here is a re-sign is no commit of this database's.
    outbox.recordRoot(8, 'root-8-snapshot', at(80), false)
    expect(outbox.otherHistory(8, 'other', at(75))).toBe(false)
    // Heads more than OWN_ROOTS_KEPT seqs back are forgotten: their seqs cannot be told either.
    outbox.recordRoot(7 + OWN_ROOTS_KEPT, 'far', at(90), true)
    expect([outbox.otherHistory(6, 'other', at(55)), outbox.otherHistory(7 + OWN_ROOTS_KEPT, 'near', at(85))]).toEqual([false, true])
  })
})
