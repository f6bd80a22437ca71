import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { initDataDir } from '../../src/datadir/init.ts'
import { loadIdentity } from '../../src/datadir/load.ts'
import { signHead } from '../../src/model/head.ts'
import { inProcessNode } from '../helpers/forge.ts'
import { tempDir, waitFor } from '../helpers/process.ts'

const ROOT = 'bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi'

describe("a member's heads with any fields a signature covers", () => {
  test('leave the node up, publishing, with no unhandled rejection, whatever their seq, stamp, acks and counts', async () => {
    using tmp = tempDir()
    const v = join(tmp.path, 'v')
    const m = join(tmp.path, 'm')
    await initDataDir(v, { newNetwork: true })
    await initDataDir(m, { swarmKeyFile: join(v, 'swarm.key') })
    const { privateKey, peerId } = await loadIdentity(m)
    const me = peerId.toString()
    const self = (await loadIdentity(v)).peerId.toString()
    const rejections: unknown[] = []
    const onRejection = (err: unknown): void => {
      rejections.push(err)
    }
    process.on('unhandledRejection', onRejection)
    const victim = await inProcessNode(v, { 'max-clock-skew': '1s' })
    try {
      let x = 12345
      const rnd = (n: number): number => {
        x = (x * 1103515245 + 12345) % 2147483648
        return Math.floor((x / 2147483648) * n)
      }
      const pick = <T>(xs: T[]): T => xs[rnd(xs.length)]
      const now = Date.now()
      for (let i = 0; i < 400; i++) {
        const seq = pick([0, 1, i, 2 ** 31, 1e12, 1e12 + 1, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER - i])
        const ms = pick([0, 1, now - 365 * 86_400_000, now - 5_000, now, now + 500, now + 2_000, now + 365 * 86_400_000, 9_999_999_999_999])
        const hlc = `${String(ms).padStart(13, '0')}-${pick(['0000', 'ffff', '0001'])}`
        const ack = pick([0, 1, 2 ** 53, 1e300, Number.MAX_SAFE_INTEGER])
        const acks = pick([{}, { [self]: ack }, { [me]: ack, [self]: ack }])
        const extra = pick([{}, { pruned_plain: pick([0, seq, Number.MAX_SAFE_INTEGER]) }, { compacted: pick([0, 1e9, Number.MAX_SAFE_INTEGER]) }])
        const head = await signHead({ producer: me, seq, root: ROOT, hlc, acks, ...extra }, privateKey)
        await victim.offerHead(head)
      }
      // Some were news: the member's row holds the highest seq offered within the skew.
      await waitFor("the member's highest head", () => victim.store.producers.get(me)?.head_seq === Number.MAX_SAFE_INTEGER)
      const published = await victim.publish({ type: 'test.after', payload: {} })
      expect(published.seq).toBe(1)
      const status = await victim.statusJson()
      expect(status.clock.publish_refused).toBeNull()
      expect(rejections).toEqual([])
    } finally {
      await victim.stop()
      process.off('unhandledRejection', onRejection)
    }
  }, 60_000)
})
