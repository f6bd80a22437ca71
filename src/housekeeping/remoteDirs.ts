import { CID } from 'multiformats/cid'
import { isDayName, isHourName } from '../model/layout.ts'
import type { Store } from '../store/store.ts'
import { readDirectoryNode } from '../unixfs/hamt.ts'
import type { DirEntry } from '../unixfs/tree.ts'
import { stretches, type StretchOptions } from './stretches.ts'

/** Days of one producer looked at in one transaction, between two pauses: a few milliseconds at most. */
const DAYS_PER_STEP = 16

/**
 * Per producer, the CID of each day directory of its synced tree when it was last looked at: a day whose
 * CID did not change since has the same hours, and is not looked into again.
 */
export type CheckedDays = Map<string, Map<string, string>>

/**
 * Forgets the rows of `remote_dirs` (the directories a walk recorded, so that the next walks descend only
 * into what changed) of the days and hours that each producer's synced tree no longer holds: its producer
 * pruned them. Without it the table keeps a row for every directory a producer ever had, about one for
 * every three events, for as long as the data directory. Only directories gone from the synced tree go: a
 * walk reads a directory with no row again whole, beyond what its budget counts on for a large one.
 *
 * A producer whose synced root or day directory is not in `read` is left as it is (what its tree holds is
 * not known). It works in steps of DAYS_PER_STEP days, each one transaction that compares the rows with
 * the synced tree as it is then (a walk that ended since the last step moved it, and recorded its rows),
 * and lets the node go on between them (`options`, as garbage collection does); indexed look-ups only: one
 * per recorded day, and for each day whose directory changed since the last run (`checked`, kept between
 * runs) one per run of hours it no longer has.
 *
 * @returns the rows deleted
 */
export async function forgetGoneDirs(store: Store, read: (cid: CID) => Uint8Array | undefined, checked: CheckedDays, options: StretchOptions = {}): Promise<number> {
  const pause = stretches(options)
  let deleted = 0
  const producers = store.producers.syncedRoots().map((r) => r.producer)
  const present = new Set(producers)
  for (const producer of checked.keys()) if (!present.has(producer)) checked.delete(producer)
  for (const producer of producers) {
    const seen = checked.get(producer) ?? new Map<string, string>()
    const now = new Map<string, string>()
    let tree: { root: string; live: Map<string, string> } | undefined
    for (let after: string | undefined, done = false; !done; ) {
      const root = store.producers.get(producer)?.synced_root
      if (root == null) break
      if (tree?.root !== root) {
        const days = directoryEntries(read, root)
        if (days == null) break
        tree = { root, live: new Map(days.filter((d) => isDayName(d.name)).map((d) => [d.name, d.cid.toString()])) }
      }
      const live = tree.live
      const days = store.transaction(() => {
        const some = store.remoteDirs.days(producer, DAYS_PER_STEP, after)
        for (const day of some) {
          const cid = live.get(day)
          if (cid == null) {
            deleted += store.remoteDirs.forgetDay(producer, day)
            continue
          }
          if (seen.get(day) === cid) {
            now.set(day, cid)
            continue
          }
          const hours = directoryEntries(read, cid)
          if (hours == null) continue
          const liveHours = new Set(hours.filter((h) => isHourName(h.name)).map((h) => h.name))
          deleted += store.remoteDirs.forgetHoursBut(producer, day, liveHours)
          now.set(day, cid)
        }
        return some
      })
      after = days.at(-1)
      done = days.length < DAYS_PER_STEP
      if (done) checked.set(producer, now)
      if (await pause()) return deleted
    }
  }
  return deleted
}

/** @returns the entries of a plain directory in `read`, or undefined when it is not there or not one */
function directoryEntries(read: (cid: CID) => Uint8Array | undefined, cid: string): DirEntry[] | undefined {
  try {
    const bytes = read(CID.parse(cid))
    if (bytes == null) return undefined
    const node = readDirectoryNode(bytes)
    return node.fanout === 0 ? node.entries : undefined
  } catch {
    return undefined
  }
}
