import { CID } from 'multiformats/cid'
import { isDayName, isHourName } from '../model/layout.ts'
import type { Store } from '../store/store.ts'
import { readDirectoryNode } from '../unixfs/hamt.ts'
import type { DirEntry } from '../unixfs/tree.ts'

/** The most days of one producer looked at in one run: more than any retention keeps (the rest wait for the next run). */
const MAX_DAYS = 4096
/** An hour bucket is named 00-23. */
const MAX_HOURS = 24

/**
 * Per producer, the CID of each day directory of its synced tree when it was last looked at: a day whose
 * CID did not change since has the same hours, and is not looked into again.
 */
export type CheckedDays = Map<string, Map<string, string>>

/**
 * Forgets the rows of `remote_dirs` (the directories a walk recorded, so that the next walks descend only
 * into what changed) of the days and hours that each producer's synced tree no longer holds: its producer
 * pruned them. Without it the table keeps a row for every directory a producer ever had, about one for
 * every three events, for as long as the data directory. Forgetting a directory that still exists costs
 * only a walk that reads it again; nothing is lost.
 *
 * A producer whose synced root or day directory is not in `read` is left as it is (what its tree holds is
 * not known). One transaction per producer; indexed look-ups only: one per recorded day, and one per
 * recorded hour of each day whose directory changed since the last run (`checked`, kept between runs).
 *
 * @returns the rows deleted
 */
export function forgetGoneDirs(store: Store, read: (cid: CID) => Uint8Array | undefined, checked: CheckedDays): number {
  let deleted = 0
  const roots = store.producers.syncedRoots()
  const present = new Set(roots.map((r) => r.producer))
  for (const producer of checked.keys()) if (!present.has(producer)) checked.delete(producer)
  for (const { producer, root } of roots) {
    const days = directoryEntries(read, root)
    if (days == null) continue
    const live = new Map(days.filter((d) => isDayName(d.name)).map((d) => [d.name, d.cid.toString()]))
    const seen = checked.get(producer) ?? new Map<string, string>()
    const now = new Map<string, string>()
    store.transaction(() => {
      for (const day of store.remoteDirs.days(producer, MAX_DAYS)) {
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
        for (const hour of store.remoteDirs.hours(producer, day, MAX_HOURS)) if (!liveHours.has(hour)) deleted += store.remoteDirs.forgetHour(producer, day, hour)
        now.set(day, cid)
      }
    })
    checked.set(producer, now)
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
