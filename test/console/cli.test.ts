import { describe, expect, test } from 'bun:test'
import { cairn, initDir, tempDir } from '../helpers/process.ts'

describe('cairn console', () => {
  test('against a stopped node says how to start it', async () => {
    using tmp = tempDir()
    const dir = await initDir(tmp.path, 'a')
    const r = await cairn(['console', '--data', dir, '--no-open'])
    expect({ code: r.code, stdout: r.stdout, stderr: r.stderr.trim() }).toEqual({
      code: 1,
      stdout: '',
      stderr: `cairn console: No node is running on ${dir}: start it with cairn run --data ${dir}`
    })
  })
})
