import { expect, test } from 'bun:test'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { lockDataDir } from '../../src/datadir/lock.ts'
import { writeRunInfo } from '../../src/datadir/runInfo.ts'
import { cairn, liveStranger, NodeProcess, tempDir } from '../helpers/process.ts'

// cairn replay and cairn plugins rebuild only write requests into cairn.db; asking the running node which plugins
// it loaded is a check on top. A node whose endpoint does not answer here (another container sharing the
// directory, or hung) must not make them fail: the request is recorded, with a line saying the check was not made.
test('replay and plugins rebuild beside a node whose status cannot be read record the request and say so', async () => {
  using tmp = tempDir()
  const node = await NodeProcess.init(tmp.path, 'n')
  await node.start()
  await node.stop()
  // The directory's lock and node.json are another container's node (a live process of another pid namespace).
  using _held = { [Symbol.dispose]: lockDataDir(node.dir) }
  await using other = liveStranger()
  const lock = join(node.dir, 'run.lock')
  const own = readFileSync(`${lock}.start`, 'utf8')
  writeFileSync(lock, String(other.pid))
  writeFileSync(`${lock}.start`, JSON.stringify({ pid: other.pid, start: `1@${JSON.parse(own).start.split('@')[1]}` }))
  writeRunInfo(node.dir, { peer_id: node.peerId, version: '0.0.1', addrs: [], http: '127.0.0.1:1', started_at: new Date().toISOString(), pid: other.pid })
  const replay = await cairn(['replay', '--dead', '--data', node.dir])
  expect([replay.code, replay.stdout.trim()]).toEqual([0, '{"queued":0}'])
  expect(replay.stderr).toContain('cannot tell which plugins the node on')
  const rebuild = await cairn(['plugins', 'rebuild', 'workspace-access', '--data', node.dir])
  expect(rebuild.code).toBe(0)
  expect(JSON.parse(rebuild.stdout)).toEqual({ rebuild: 'workspace-access', when: expect.stringContaining('when the node that runs on this directory loads workspace-access') })
  expect(rebuild.stderr).toContain('runs in another container')
}, 120_000)
