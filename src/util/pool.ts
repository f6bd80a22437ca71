/**
 * Runs `fn` on every item with at most `limit` calls in flight; stops taking new items once `signal`
 * aborts (the calls under way finish).
 *
 * @returns the results in the order of `items` (holes for items not started after an abort)
 * @example
 * ```ts
 * const sizes = await pooledMap(cids, 64, async (cid) => (await getBlock(cid)).length)
 * ```
 */
export async function pooledMap<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>, options: { signal?: AbortSignal } = {}): Promise<R[]> {
  const out = new Array<R>(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length && options.signal?.aborted !== true) {
      const i = next++
      out[i] = await fn(items[i], i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return out
}
