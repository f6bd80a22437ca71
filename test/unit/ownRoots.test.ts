import { describe, expect, test } from 'bun:test'
import { openDatabase } from '../../src/runtime/sqlite.ts'
import { MIGRATIONS, migrate } from '../../src/store/migrations.ts'
import { OWN_ROOTS_KEPT, OutboxTable } from '../../src/store/outbox.ts'

describe('the roots of the heads this node signed', () => {
  test('are judged only for seqs after those it had when they began to be recorded, and within the seqs kept', async () => {
    const db = await openDatabase(':memory:')
    // A database that published seqs up to 5 before migration 10.
    migrate(db, MIGRATIONS.slice(0, 9))
    for (let seq = 1; seq <= 5; seq++) {
      db.run("INSERT INTO outbox (seq, event_id, bucket, name, cid, size, created_at) VALUES (?, ?, '2026-11-30/04', ?, 'bafy', 1, 0)", [seq, `e${seq}`, `n${seq}`])
    }
    migrate(db)
    const outbox = new OutboxTable(db)
    // Seq 5 was signed before: a peer may hold any root of it (a prune re-signed it), so it cannot be told.
    outbox.recordRoot(5, 'root-5b')
    expect(outbox.signedRoot(5, 'root-5a')).toBeUndefined()
    outbox.recordRoot(6, 'root-6')
    outbox.recordRoot(6, 'root-6-pruned')
    expect([outbox.signedRoot(6, 'root-6'), outbox.signedRoot(6, 'root-6-pruned'), outbox.signedRoot(6, 'other'), outbox.signedRoot(7, 'root-7')]).toEqual([true, true, false, undefined])
    // Roots more than OWN_ROOTS_KEPT seqs back are forgotten: their seqs cannot be told either.
    outbox.recordRoot(7 + OWN_ROOTS_KEPT, 'far')
    expect([outbox.signedRoot(6, 'other'), outbox.signedRoot(7 + OWN_ROOTS_KEPT, 'far')]).toEqual([undefined, true])
  })
})
