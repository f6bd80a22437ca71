import { Database } from 'bun:sqlite'
import { join } from 'node:path'

/** Runs a read query against a node's database (it may be running: WAL lets both in). */
export function query<T = Record<string, unknown>> (dir: string, sql: string, params: Array<string | number> = []): T[] {
  const db = new Database(join(dir, 'cairn.db'), { readonly: true })
  try {
    return db.query(sql).all(...params) as T[]
  } finally {
    db.close()
  }
}

/** @returns how many rows `events` holds */
export function eventCount (dir: string): number {
  return query<{ n: number }>(dir, 'SELECT count(*) AS n FROM events')[0].n
}
