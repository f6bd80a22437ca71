import { expect, test } from 'bun:test'
import { cairn, heldElsewhere, NodeProcess, tempDir } from '../helpers/process.ts'

// cairn replay and cairn plugins rebuild only write requests into cairn.db; asking the running node which plugins
// it loaded is a check on top. A node whose endpoint does not answer here (another container sharing the
// directory, or hung) must not make them fail: the request is recorded, with a line saying the check was not made.
test('replay and plugins rebuild beside a node whose status cannot be read record the request and say so', async () => {
  using tmp = tempDir()
  const node = await NodeProcess.init(tmp.path, 'n')
  await node.start()
  await node.stop()
  // The directory's lock and node.json are another container's node.
  await using _elsewhere = heldElsewhere(node.dir, node.peerId)
  const replay = await cairn(['replay', '--dead', '--data', node.dir])
  expect([replay.code, replay.stdout.trim()]).toEqual([0, '{"queued":0}'])
  expect(replay.stderr).toContain('cannot tell which plugins the node on')
  const rebuild = await cairn(['plugins', 'rebuild', 'workspace-access', '--data', node.dir])
  expect(rebuild.code).toBe(0)
  expect(JSON.parse(rebuild.stdout)).toEqual({ rebuild: 'workspace-access', when: expect.stringContaining('when the node that runs on this directory loads workspace-access') })
  expect(rebuild.stderr).toContain('runs in another container')
}, 120_000)
