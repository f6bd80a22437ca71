import { Database } from 'bun:sqlite'
import { join } from 'node:path'

/** Runs a read query against a node's database (it may be running: WAL lets both in). */
export function query<T = Record<string, unknown>>(dir: string, sql: string, params: Array<string | number> = []): T[] {
  const db = new Database(join(dir, 'cairn.db'), { readonly: true })
  try {
    return db.query(sql).all(...params) as T[]
  } finally {
    db.close()
  }
}

/** @returns how many rows `events` holds */
export function eventCount(dir: string): number {
  return query<{ n: number }>(dir, 'SELECT count(*) AS n FROM events')[0].n
}

/**
 * Reads the table of the apply-counter example plugin (examples/apply-counter.js), which adds 1 to an
 * event's counter on every apply.
 *
 * @returns the events it applied, those applied exactly once, and those applied more than once
 */
export function appliedCounts(dir: string): { rows: number; once: number; doubled: number } {
  try {
    return query<{ rows: number; once: number; doubled: number }>(dir, 'SELECT count(*) AS rows, coalesce(sum(n = 1), 0) AS once, coalesce(sum(n > 1), 0) AS doubled FROM apply_counter')[0]
  } catch {
    // the plugin's table does not exist before its migration ran
    return { rows: 0, once: 0, doubled: 0 }
  }
}
