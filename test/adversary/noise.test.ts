import { describe, expect, test } from 'bun:test'
import { inProcessNode } from '../helpers/forge.ts'
import { initDir, tempDir } from '../helpers/process.ts'

describe('an idle node', () => {
  test('re-publishing an unchanged gossip message (as peer discovery does every 10 s) is a no-op, not an unhandled PublishError', async () => {
    using tmp = tempDir()
    const node = await inProcessNode(await initDir(tmp.path, 'a'))
    try {
      const pubsub = node.ipfs.libp2p.services.pubsub
      const topic = `cairn/${node.network}/peers`
      const record = new TextEncoder().encode('the same peer record')
      await pubsub.publish(topic, record)
      // Before, gossipsub threw PublishError.Duplicate here, and peer discovery's `void publish(...)` left it unhandled.
      await expect(pubsub.publish(topic, record)).resolves.toBeDefined()
    } finally {
      await node.stop()
    }
  })
})
