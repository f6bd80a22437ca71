import type { CID } from 'multiformats/cid'
import { isDayName, isHourName, parseFileName } from '../model/layout.ts'
import type { Rejection } from '../model/eventFile.ts'
import type { DirEntry } from '../unixfs/tree.ts'

/** An event file a walk fetches: its seq is above the processed one and at most the head's. */
export interface Candidate {
  seq: number
  eventId: string
  cid: CID
  path: string
}

/** An entry of a producer's tree that a walk refused; `seq` when it is an event file. */
export interface Refused {
  path: string
  cid?: string
  rejection: Rejection
  seq?: number
}

/** The seqs a walk looks for, and the largest file it fetches. */
export interface WalkWindow {
  processedSeq: number
  headSeq: number
  maxEventSize: number
}

/** @returns why an entry of the root is not a day bucket, or undefined when it is one */
export function refuseDay(day: DirEntry): Refused | undefined {
  if (isDayName(day.name)) return undefined
  return { path: day.name, cid: day.cid.toString(), rejection: { reason: 'name_mismatch', detail: `${day.name} is not a day bucket (yyyy-mm-dd)` } }
}

/** @returns why an entry of a day bucket is not an hour bucket, or undefined when it is one */
export function refuseHour(dayName: string, hour: DirEntry): Refused | undefined {
  if (isHourName(hour.name)) return undefined
  return { path: `${dayName}/${hour.name}`, cid: hour.cid.toString(), rejection: { reason: 'name_mismatch', detail: `${hour.name} is not an hour bucket (00-23)` } }
}

/**
 * Sorts the files of an hour bucket: those to fetch, those refused by name, and those refused as
 * oversized from their link size (without fetching them; a file that lies about its size is caught
 * after the fetch). Files outside the window are passed over.
 *
 * @returns candidates, refusals and oversized seqs, each in the order of `files`
 */
export function planFiles(hourPath: string, files: readonly DirEntry[], window: WalkWindow): { candidates: Candidate[]; refused: Refused[]; oversized: number[] } {
  const candidates: Candidate[] = []
  const refused: Refused[] = []
  const oversized: number[] = []
  for (const file of files) {
    const path = `${hourPath}/${file.name}`
    const parsed = parseFileName(file.name)
    if (parsed == null) {
      refused.push({ path, cid: file.cid.toString(), rejection: { reason: 'name_mismatch', detail: `${file.name} does not follow <seq, 12 digits>-<event_id>.json` } })
      continue
    }
    if (parsed.seq <= window.processedSeq || parsed.seq > window.headSeq) continue
    if (file.size > window.maxEventSize) {
      refused.push({ path, cid: file.cid.toString(), rejection: { reason: 'oversized', detail: `${file.size} bytes is over the limit of ${window.maxEventSize}` }, seq: parsed.seq })
      oversized.push(parsed.seq)
      continue
    }
    candidates.push({ ...parsed, cid: file.cid, path })
  }
  return { candidates, refused, oversized }
}

/**
 * Splits the sorted candidates into chunks of at most `size`, so that memory stays bounded on a long
 * catch-up; there is always one chunk (empty when there is nothing to fetch), the one that records gaps
 * and completes the walk.
 */
export function chunksOf(candidates: readonly Candidate[], size: number): Candidate[][] {
  const n = Math.max(1, size)
  const chunks: Candidate[][] = []
  for (let i = 0; i < candidates.length; i += n) chunks.push(candidates.slice(i, i + n))
  if (chunks.length === 0) chunks.push([])
  return chunks
}

/**
 * @returns the refusals chunk `k` (covering seqs `prevTop+1..top`) records: refusals without a seq go
 * with the first chunk, the others with the chunk whose range holds their seq (the last takes the rest)
 */
export function refusedIn(refused: readonly Refused[], k: number, prevTop: number, top: number, last: boolean): Refused[] {
  return refused.filter((r) => (r.seq == null ? k === 0 : r.seq > prevTop && (last || r.seq <= top)))
}

/**
 * @returns the ranges of seqs in `from..to` that are not in `found` (accepted, quarantined or refused
 * as oversized): the seqs the tree no longer holds
 */
export function gapsIn(found: ReadonlySet<number>, from: number, to: number): Array<[number, number]> {
  const gaps: Array<[number, number]> = []
  let start: number | undefined
  for (let seq = from; seq <= to; seq++) {
    if (!found.has(seq)) {
      start ??= seq
      continue
    }
    if (start != null) {
      gaps.push([start, seq - 1])
      start = undefined
    }
  }
  if (start != null) gaps.push([start, to])
  return gaps
}
