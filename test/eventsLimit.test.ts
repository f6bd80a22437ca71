import { describe, expect, test } from 'bun:test'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { cairn, invite, NodeProcess, tempDir } from './helpers/process.ts'

describe('cairn events at its limit', () => {
  test('says on stderr where it stopped and how to page; --json without --limit lists every event', async () => {
    using tmp = tempDir()
    await using node = await NodeProcess.init(tmp.path, 'a')
    await node.start()
    const batch = join(tmp.path, 'batch.jsonl')
    writeFileSync(batch, Array.from({ length: 1005 }, (_, i) => JSON.stringify(invite(i))).join('\n'))
    const published = await cairn(['publish', '--data', node.dir, '--batch', batch])
    expect(published.code).toBe(0)

    const plain = await cairn(['events', '--data', node.dir])
    const lines = plain.stdout.trim().split('\n')
    expect(lines.length).toBe(1000)
    const lastCursor = Number(lines[999].trim().split(/\s+/)[0])
    expect(plain.stderr.trim()).toBe(
      `cairn events: stopped at 1000 events (the default --limit); more follow. Continue with --after ${lastCursor}, raise --limit, or use --json without --limit for every event.`
    )
    const rest = await cairn(['events', '--data', node.dir, '--after', String(lastCursor)])
    expect({ lines: rest.stdout.trim().split('\n').length, stderr: rest.stderr }).toEqual({ lines: 5, stderr: '' })

    const all = await cairn(['events', '--data', node.dir, '--json'])
    const cursors = all.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).cursor as number)
    expect({ count: cursors.length, distinct: new Set(cursors).size, stderr: all.stderr }).toEqual({ count: 1005, distinct: 1005, stderr: '' })

    const ten = await cairn(['events', '--data', node.dir, '--json', '--limit', '10'])
    expect(ten.stdout.trim().split('\n').length).toBe(10)
    expect(ten.stderr).toContain(`stopped at 10 events (--limit); more follow. Continue with --after ${cursors[9]}`)

    const exact = await cairn(['events', '--data', node.dir, '--limit', '1005'])
    expect({ lines: exact.stdout.trim().split('\n').length, stderr: exact.stderr }).toEqual({ lines: 1005, stderr: '' })
  }, 120_000)
})
