import type { CID } from 'multiformats/cid'
import { fileName } from '../model/layout.ts'
import { cidFromBytes } from '../util/cidString.ts'
import type { Rejection } from '../model/eventFile.ts'

/** An entry of a producer's tree that a walk refused; `seq` when it is an event file. */
export interface Refused {
  path: string
  cid?: string
  rejection: Rejection
  seq?: number
}

/** Rows a table starts with; it doubles as it fills. */
const INITIAL_ROWS = 64

/** Bytes of an event_id (a UUID: 32 hex digits, dashes after the 8th, 12th, 16th and 20th). */
const ID_BYTES = 16

/** The char codes of lowercase hex digits. */
const HEX = Array.from('0123456789abcdef', (c) => c.charCodeAt(0))

/**
 * The event files one pass of a walk plans, column by column: a catch-up holds up to 2 × 5 ×
 * max-files-per-walk of them, so each is a row of a few typed arrays (its seq, link size, event_id as 16
 * bytes, the index of its hour bucket's path, and its CID's bytes in one arena), ~80 bytes, and no object
 * of its own. The file name and path are derived (`model/layout.ts` writes the name from seq and
 * event_id, as the producer did: planFiles took only names of that form). A row is a file to fetch, or
 * one refused as oversized from its link size.
 */
export class PlannedFiles {
  /** rows held */
  length = 0
  /** the largest file fetched: the limit an oversized row's refusal names */
  readonly maxEventSize: number
  private seqs = new Float64Array(INITIAL_ROWS)
  private sizes = new Float64Array(INITIAL_ROWS)
  private flags = new Uint8Array(INITIAL_ROWS)
  private dirOf = new Uint32Array(INITIAL_ROWS)
  private ids = new Uint8Array(INITIAL_ROWS * ID_BYTES)
  /** where each row's CID ends in `arena`; it starts where the row before it ends */
  private cidEnds = new Uint32Array(INITIAL_ROWS)
  private arena = new Uint8Array(INITIAL_ROWS * 40)
  /** the hour buckets' paths, each once */
  private readonly dirs: string[]
  private readonly dirIndex: Map<string, number>

  constructor(maxEventSize: number, dirs: string[] = [], dirIndex = new Map<string, number>()) {
    this.maxEventSize = maxEventSize
    this.dirs = dirs
    this.dirIndex = dirIndex
  }

  /** Appends a row: a file in the bucket at `dir` (`day/hour`); `oversized` when refused by its link size. */
  push(dir: string, seq: number, eventId: string, cid: Uint8Array, size: number, oversized: boolean): void {
    if (this.length === this.seqs.length) this.grow(this.length * 2)
    const i = this.length
    let d = this.dirIndex.get(dir)
    if (d == null) {
      d = this.dirs.length
      this.dirs.push(dir)
      this.dirIndex.set(dir, d)
    }
    const start = i === 0 ? 0 : this.cidEnds[i - 1]
    if (start + cid.length > this.arena.length) {
      const arena = new Uint8Array(Math.max(2 * this.arena.length, start + cid.length))
      arena.set(this.arena.subarray(0, start))
      this.arena = arena
    }
    this.arena.set(cid, start)
    this.cidEnds[i] = start + cid.length
    this.seqs[i] = seq
    this.sizes[i] = size
    this.flags[i] = oversized ? 1 : 0
    this.dirOf[i] = d
    writeId(eventId, this.ids, i * ID_BYTES)
    this.length++
  }

  /** @returns row `i`'s seq */
  seq(i: number): number {
    return this.seqs[i]
  }

  /** @returns row `i`'s size as its directory link gives it */
  size(i: number): number {
    return this.sizes[i]
  }

  /** @returns whether row `i` was refused as oversized (not fetched) */
  oversized(i: number): boolean {
    return this.flags[i] === 1
  }

  /** @returns row `i`'s event_id */
  eventId(i: number): string {
    return readId(this.ids, i * ID_BYTES)
  }

  /**
   * @returns row `i`'s CID, its string cached flat (cidFromBytes), decoded from a copy of its bytes:
   * decoding takes views of the bytes, and a view gives a typed array an ArrayBuffer of its own
   * (JavaScriptCore), which would keep the arena
   */
  cid(i: number): CID {
    return cidFromBytes(this.arena.slice(i === 0 ? 0 : this.cidEnds[i - 1], this.cidEnds[i]))
  }

  /** @returns row `i`'s path in the producer's tree */
  path(i: number): string {
    return `${this.dirs[this.dirOf[i]]}/${fileName(this.seqs[i], this.eventId(i))}`
  }

  /** @returns the refusal of row `i`, an oversized file */
  refusal(i: number): Refused {
    return {
      path: this.path(i),
      cid: this.cid(i).toString(),
      rejection: { reason: 'oversized', detail: `${this.sizes[i]} bytes is over the limit of ${this.maxEventSize}` },
      seq: this.seqs[i]
    }
  }

  /** @returns the seqs of the rows, in row order (a view: valid until the table changes) */
  seqList(): Float64Array {
    return this.seqs.subarray(0, this.length)
  }

  /** @returns how many rows are files to fetch (not oversized) */
  toFetch(): number {
    let n = 0
    for (let i = 0; i < this.length; i++) n += 1 - this.flags[i]
    return n
  }

  /** Drops the rows whose seq is above `seq` (rows sorted by seq). */
  keepUpTo(seq: number): void {
    let lo = 0
    let hi = this.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.seqs[mid] <= seq) lo = mid + 1
      else hi = mid
    }
    this.length = lo
  }

  /** @returns a table of the rows `order[0..n)`, in that order, with room for `capacity` rows */
  select(order: ArrayLike<number>, n: number, capacity = n): PlannedFiles {
    const out = new PlannedFiles(this.maxEventSize, this.dirs, this.dirIndex)
    out.grow(Math.max(INITIAL_ROWS, capacity, n))
    let bytes = 0
    for (let k = 0; k < n; k++) {
      const i = order[k]
      bytes += this.cidEnds[i] - (i === 0 ? 0 : this.cidEnds[i - 1])
    }
    out.arena = new Uint8Array(Math.max(INITIAL_ROWS * 40, Math.ceil((bytes * out.seqs.length) / Math.max(1, n))))
    let at = 0
    for (let k = 0; k < n; k++) {
      const i = order[k]
      const start = i === 0 ? 0 : this.cidEnds[i - 1]
      const end = this.cidEnds[i]
      out.arena.set(this.arena.subarray(start, end), at)
      at += end - start
      out.cidEnds[k] = at
      out.seqs[k] = this.seqs[i]
      out.sizes[k] = this.sizes[i]
      out.flags[k] = this.flags[i]
      out.dirOf[k] = this.dirOf[i]
      out.ids.set(this.ids.subarray(i * ID_BYTES, (i + 1) * ID_BYTES), k * ID_BYTES)
    }
    out.length = n
    return out
  }

  /** @returns the row indices sorted by seq, rows of one seq in the order they were pushed */
  order(): Uint32Array {
    const order = new Uint32Array(this.length)
    for (let i = 0; i < order.length; i++) order[i] = i
    const seqs = this.seqs
    return order.sort((a, b) => seqs[a] - seqs[b] || a - b)
  }

  private grow(rows: number): void {
    const copy = <T extends Float64Array | Uint32Array | Uint8Array>(from: T, to: T): T => {
      to.set(from.subarray(0, Math.min(from.length, to.length)))
      return to
    }
    this.seqs = copy(this.seqs, new Float64Array(rows))
    this.sizes = copy(this.sizes, new Float64Array(rows))
    this.flags = copy(this.flags, new Uint8Array(rows))
    this.dirOf = copy(this.dirOf, new Uint32Array(rows))
    this.cidEnds = copy(this.cidEnds, new Uint32Array(rows))
    this.ids = copy(this.ids, new Uint8Array(rows * ID_BYTES))
  }
}

/** Writes an event_id (a lowercase UUID, as parseFileName accepts) as 16 bytes at `at`. */
function writeId(id: string, into: Uint8Array, at: number): void {
  let k = at
  for (let c = 0; c < id.length; c++) {
    if (id.charCodeAt(c) === 45) continue
    into[k++] = (hexValue(id.charCodeAt(c)) << 4) | hexValue(id.charCodeAt(++c))
  }
}

const hexValue = (code: number): number => (code <= 57 ? code - 48 : code - 87)

const idCodes: number[] = new Array(36)

/** @returns the event_id written at `at` by writeId */
function readId(from: Uint8Array, at: number): string {
  let c = 0
  for (let b = 0; b < ID_BYTES; b++) {
    if (b === 4 || b === 6 || b === 8 || b === 10) idCodes[c++] = 45
    idCodes[c++] = HEX[from[at + b] >> 4]
    idCodes[c++] = HEX[from[at + b] & 15]
  }
  return String.fromCharCode(...idCodes)
}
