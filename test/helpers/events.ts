import { uuidv7 } from 'uuidv7'
import { openDatabase, type SqlDatabase } from '../../src/runtime/sqlite.ts'
import { migrate } from '../../src/store/migrations.ts'
import { insertEvent } from '../../src/store/events.ts'

/** The producer of the events addCount inserts. */
export const COUNT_PRODUCER = '12D3KooWA1111111111111111111111111111111111111111111'
let seq = 0

/** @returns a migrated in-memory cairn.db */
export async function memoryDatabase(): Promise<SqlDatabase> {
  const db = await openDatabase(':memory:')
  migrate(db)
  return db
}

/** Inserts a `test.count` event `{ n }` of COUNT_PRODUCER with the next seq. @returns its event_id */
export function addCount(db: SqlDatabase, n: number): string {
  const id = uuidv7()
  seq++
  insertEvent(
    db,
    {
      event_id: id,
      type: 'test.count',
      version: 1,
      producer: COUNT_PRODUCER,
      seq,
      hlc: `${Date.now()}-${(seq % 65536).toString(16).padStart(4, '0')}`,
      occurred_at: new Date().toISOString(),
      payload: { n }
    },
    'bafy',
    Date.now()
  )
  return id
}
