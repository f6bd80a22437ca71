/**
 * Splits `items`, in order, into runs of at most `maxCount` items and, past a run's first item, at most
 * `maxBytes` by `sizeOf` (an item larger than that goes alone).
 *
 * @returns the runs; none for no items
 */
export function runsOf<T>(items: Iterable<T>, maxCount: number, maxBytes: number, sizeOf: (item: T) => number): T[][] {
  const runs: T[][] = []
  let run: T[] = []
  let bytes = 0
  for (const item of items) {
    const size = sizeOf(item)
    if (run.length > 0 && (run.length >= maxCount || bytes + size > maxBytes)) {
      runs.push(run)
      run = []
      bytes = 0
    }
    run.push(item)
    bytes += size
  }
  if (run.length > 0) runs.push(run)
  return runs
}
