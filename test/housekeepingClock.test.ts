import { describe, expect, test } from 'bun:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { join } from 'node:path'
import { BUILTIN_PLUGINS } from '../plugins/mod.ts'
import { RUN_SETTINGS, toNodeConfig } from '../src/config/catalog.ts'
import { resolveSettings } from '../src/config/resolve.ts'
import { initDataDir } from '../src/datadir/init.ts'
import { loadIdentity } from '../src/datadir/load.ts'
import { type Log, silentLog } from '../src/log/logger.ts'
import { CairnNode } from '../src/node/node.ts'
import { tempDir } from './helpers/process.ts'

const HOUR = 3_600_000

describe('housekeeping on a node whose system clock is set ahead', () => {
  test('keeps the files a member has not acknowledged, says why in status and the log, and still does after a restart', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'a')
    await initDataDir(dir, { newNetwork: true })
    const self = (await loadIdentity(dir)).peerId.toString()
    // A member that was never heard from: only retention-max lets this node's files go without it.
    const absent = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    const config = toNodeConfig(
      resolveSettings(
        RUN_SETTINGS,
        {
          data: dir,
          listen: ['/ip4/127.0.0.1/tcp/0'],
          http: '127.0.0.1:0',
          'announce-interval': '1h',
          'allow-unknown-types': true,
          members: [self, absent],
          retention: '1s',
          'retention-max': '1h',
          'housekeeping-interval': '1h'
        },
        {},
        {}
      )
    )
    const clock = { jump: 0 }
    const warned: unknown[] = []
    const log: Log = { ...silentLog, warn: (_, fields) => warned.push(fields?.reason), child: () => log }
    const start = async (): Promise<CairnNode> => {
      // The machine booted a day ago, whenever it did: a step of the clock in a boot's first minutes is the boot's own.
      const node = new CairnNode(config, { log, plugins: BUILTIN_PLUGINS, now: () => Date.now() + clock.jump, uptime: () => ({ boot: 'test-boot', ms: 86_400_000 + performance.now() }) })
      await node.start()
      return node
    }
    let node = await start()
    try {
      for (let i = 0; i < 3; i++) await node.publish({ type: 'test.plain', payload: { i } })
      await node.housekeeping()
      clock.jump = 2 * HOUR
      await node.housekeeping()
      let status = await node.statusJson()
      expect(status.outbox.files).toBe(3)
      expect(status.housekeeping.last?.kept_for_clock?.files).toBe(3)
      expect(status.verdict).toBe('degraded')
      expect(status.reasons.find((r) => r.startsWith('housekeeping keeps 3 own file(s)'))).toContain('ahead of the time the machine measured since (its uptime)')
      expect(warned).toContain('prune_clock_ahead')
      // A restart with the clock still ahead: it goes on from the time it recorded, not from the wall clock.
      await node.stop()
      node = await start()
      await node.housekeeping()
      status = await node.statusJson()
      expect(status.outbox.files).toBe(3)
      expect(status.reasons.some((r) => r.startsWith('housekeeping keeps 3 own file(s)'))).toBe(true)
    } finally {
      await node.stop()
    }
  }, 60_000)
})
