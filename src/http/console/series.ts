/** Cumulative counts the overview's charts are drawn from, read at one instant. */
export interface Reading {
  /** events this node published since start */
  published: number
  /** events added to the events table since start (own and fetched) */
  ingested: number
  /** the cursor every plugin has processed up to */
  applied: number
  /** events each producer's head is ahead of what this node stored (the status's lag_events) */
  lag: ReadonlyArray<{ producer: string; lag_events: number }>
}

/** The charts' data: one column per sample, rates in events per second. */
export interface Series {
  t: number[]
  published: number[]
  ingested: number[]
  applied: number[]
  /** per producer (the most lagging ones), its lag at each sample (null before it was seen) */
  lag: Record<string, Array<number | null>>
}

/** Samples kept: with a sample every two seconds, the last five minutes. */
const SAMPLES = 150
/** Producers charted at most: the ones lagging most at the newest sample, then by name. */
const MAX_PRODUCERS = 8

/**
 * A fixed-size window of readings, turned into rates for the overview's charts. It holds at most
 * `SAMPLES` readings, however long the node runs and however many producers there are.
 */
export class SeriesWindow {
  private readonly readings: Array<{ at: number; r: Reading }> = []

  /** Records a reading taken at `at` (ms), dropping the oldest beyond the window. */
  add(at: number, r: Reading): void {
    this.readings.push({ at, r })
    if (this.readings.length > SAMPLES) this.readings.shift()
  }

  /** @returns rates between consecutive readings and the lag of the most lagging producers */
  series(): Series {
    const out: Series = { t: [], published: [], ingested: [], applied: [], lag: {} }
    const newest = this.readings.at(-1)?.r.lag ?? []
    const charted = [...newest]
      .sort((a, b) => b.lag_events - a.lag_events || a.producer.localeCompare(b.producer))
      .slice(0, MAX_PRODUCERS)
      .map((p) => p.producer)
    for (const p of charted) out.lag[p] = []
    for (let i = 1; i < this.readings.length; i++) {
      const a = this.readings[i - 1]
      const b = this.readings[i]
      const s = Math.max((b.at - a.at) / 1000, 0.001)
      const rate = (k: 'published' | 'ingested' | 'applied'): number => Math.max(0, (b.r[k] - a.r[k]) / s)
      out.t.push(Math.round(b.at / 1000))
      out.published.push(rate('published'))
      out.ingested.push(rate('ingested'))
      out.applied.push(rate('applied'))
      for (const p of charted) out.lag[p].push(b.r.lag.find((x) => x.producer === p)?.lag_events ?? null)
    }
    return out
  }
}
