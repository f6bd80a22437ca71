import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { RUN_SETTINGS, toNodeConfig } from '../../src/config/catalog.ts'
import { resolveSettings } from '../../src/config/resolve.ts'
import { initDataDir } from '../../src/datadir/init.ts'
import { silentLog } from '../../src/log/logger.ts'
import { CairnNode } from '../../src/node/node.ts'
import { reclock } from '../../src/node/reclock.ts'
import { BUILTIN_PLUGINS } from '../../plugins/mod.ts'
import { addr } from '../helpers/forge.ts'
import { tempDir, waitFor } from '../helpers/process.ts'

const YEAR_MS = 365 * 86_400_000

const configOf = (dir: string, flags: Record<string, unknown> = {}) =>
  toNodeConfig(resolveSettings(RUN_SETTINGS, { data: dir, listen: ['/ip4/127.0.0.1/tcp/0'], http: '127.0.0.1:0', 'announce-interval': '1s', 'allow-unknown-types': true, ...flags }, {}, {}))

async function node(dir: string, flags: Record<string, unknown>, offsetMs: number): Promise<CairnNode> {
  const n = new CairnNode(configOf(dir, flags), { log: silentLog, plugins: BUILTIN_PLUGINS, now: () => Date.now() + offsetMs })
  await n.start()
  return n
}

describe('cairn reclock on a node whose only other producer stamped its heads as far ahead as its clock ran', () => {
  test('refuses, taking its clock set right for one set back: that producer keeps it cut off', async () => {
    using tmp = tempDir()
    const n = join(tmp.path, 'n')
    const x = join(tmp.path, 'x')
    await initDataDir(n, { newNetwork: true })
    await initDataDir(x, { swarmKeyFile: join(n, 'swarm.key') })
    // n's clock runs a year ahead; x, a member, stamps its heads a year ahead too (within n's skew: n stores them).
    const nn = await node(n, {}, YEAR_MS)
    const nx = await node(x, { bootstrap: [addr(nn)], 'publish-fence': '0s' }, YEAR_MS)
    try {
      await nn.publish({ type: 'test.e', payload: {} })
      await nx.publish({ type: 'test.e', payload: {} })
      await waitFor("x's head on n", () => nn.store.producers.get(nx.peerId.toString())?.head_seq === 1, 20_000)
    } finally {
      await nx.stop()
      await nn.stop()
    }
    // n's clock is set right; its operator runs cairn reclock.
    await expect(reclock(configOf(n))).rejects.toThrow('this clock looks behind')
  }, 60_000)
})
