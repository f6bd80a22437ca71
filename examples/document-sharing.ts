// A cairn plugin in TypeScript: who each document is shared with. Its test is document-sharing.test.ts
// (cairn run --plugins ./examples loads this file and skips the test). Outside this repository the
// imports are the same: npm install the @cairn/plugin tarball (see docs/plugins.md).
import { definePlugin, upcaster, v } from '@cairn/plugin'

const Email = v.pipe(v.string(), v.trim(), v.toLowerCase(), v.email('Expected an email'))

/** `document.shared` v1: one person at a time. */
const SharedV1 = v.strictObject({ document_id: v.string(), with: Email })

/** `document.shared` v2: several people, with a role. */
const Shared = v.strictObject({
  document_id: v.pipe(v.string(), v.minLength(1, 'Expected a document id')),
  shared_with: v.pipe(v.array(Email), v.minLength(1, 'Expected at least one person')),
  role: v.optional(v.picklist(['viewer', 'editor']), 'viewer')
})

const Unshared = v.strictObject({ document_id: v.string(), with: Email })

// One row per (document, person), decided by the newest event touching it in the order (hlc, producer,
// event_id), so every node ends with the same table whatever order the events arrived in.
const UPSERT = `INSERT INTO document_shares (document_id, person, shared, role, order_key) VALUES (?, ?, ?, ?, ?)
  ON CONFLICT (document_id, person) DO UPDATE SET shared = excluded.shared, role = excluded.role, order_key = excluded.order_key
  WHERE excluded.order_key > document_shares.order_key`

const orderKey = (e: { hlc: string; producer: string; event_id: string }): string => `${e.hlc}|${e.producer}|${e.event_id}`

export default definePlugin({
  name: 'document-sharing',
  version: '2.0.0',
  handles: {
    'document.shared': {
      version: 2,
      payload: Shared,
      upcast: { 1: upcaster(SharedV1, (old) => ({ document_id: old.document_id, shared_with: [old.with] })) },
      apply(event, { db }) {
        for (const person of event.payload.shared_with) db.run(UPSERT, [event.payload.document_id, person, 1, event.payload.role, orderKey(event)])
      }
    },
    'document.unshared': {
      version: 1,
      payload: Unshared,
      apply(event, { db }) {
        db.run(UPSERT, [event.payload.document_id, event.payload.with, 0, null, orderKey(event)])
      }
    }
  },
  migrations: [
    `CREATE TABLE document_shares (
       document_id TEXT NOT NULL,
       person TEXT NOT NULL,
       shared INTEGER NOT NULL,
       role TEXT,
       order_key TEXT NOT NULL,
       PRIMARY KEY (document_id, person)
     )`
  ]
})
