import { describe, expect, test } from 'bun:test'
import { HINT_MAX_BLOCKS, HINT_MAX_BYTES, hintMessage, MAX_HEAD_BYTES, verifyHeadMessage, withBlocks } from '../../src/model/head.ts'
import { forgedHead, mintProducer, randomBlock } from './helpers.ts'

describe('a hint message', () => {
  test('carries its blocks only within the budget', async () => {
    const head = new TextEncoder().encode(JSON.stringify({ head: { producer: 'p' }, sig: 's' }))
    const small = [await randomBlock(1024)]
    expect(hintMessage(head, small).length).toBeGreaterThan(head.length)
    expect(hintMessage(head, [await randomBlock(HINT_MAX_BYTES + 1)])).toBe(head)
    const many = await Promise.all(Array.from({ length: HINT_MAX_BLOCKS + 1 }, async () => await randomBlock(8)))
    expect(hintMessage(head, many)).toBe(head)
  })
  test('over the budget, a hint is refused before its signature or blocks are checked', async () => {
    const head = await forgedHead(await mintProducer(), 1)
    const over = withBlocks(head, [await randomBlock(HINT_MAX_BYTES + 1)])
    expect(over.length).toBeLessThan(MAX_HEAD_BYTES)
    await expect(verifyHeadMessage(over)).rejects.toMatchObject({ name: 'InvalidHeadError', reason: 'oversized_hint' })
    const within = withBlocks(head, [await randomBlock(1024)])
    expect((await verifyHeadMessage(within)).blocks).toHaveLength(1)
  })
})
