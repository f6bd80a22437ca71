import { describe, expect, test } from 'bun:test'
import { chmodSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { initDataDir } from '../../src/datadir/init.ts'
import { inProcessNode } from '../helpers/forge.ts'
import { looseModes } from '../../src/datadir/modes.ts'
import { cairn, NodeProcess, tempDir } from '../helpers/process.ts'

/** @returns each entry of `dir` (and `dir`) with its permission bits in octal */
function modes(dir: string): Record<string, string> {
  const out: Record<string, string> = { '.': (statSync(dir).mode & 0o777).toString(8) }
  for (const name of readdirSync(dir)) if (!statSync(join(dir, name)).isDirectory()) out[name] = (statSync(join(dir, name)).mode & 0o777).toString(8)
  return out
}

describe('the data directory at rest', () => {
  test('cairn init into an existing open directory makes it 0700 and every file 0600', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'n')
    mkdirSync(dir, { mode: 0o755 })
    chmodSync(dir, 0o755)
    const r = await cairn(['init', '--data', dir, '--new-network'], { runtime: 'bun' })
    expect(r.code).toBe(0)
    const m = modes(dir)
    expect(Object.entries(m).filter(([name, mode]) => mode !== (name === '.' ? '700' : '600'))).toEqual([])
    expect(Object.keys(m)).toContain('cairn.db')
  })

  test('a start tightens loose modes of existing files, and doctor names each loose one with its mode', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'n')
    await initDataDir(dir, { newNetwork: true })
    writeFileSync(join(dir, 'config.json'), '{}\n')
    for (const f of ['cairn.db', 'blocks.db', 'config.json']) chmodSync(join(dir, f), 0o644)
    chmodSync(dir, 0o755)
    const doctor = await cairn(['doctor', '--data', dir], { runtime: 'bun' })
    expect(doctor.stdout + doctor.stderr).toContain(`${join(dir, 'cairn.db')} is 0644`)
    expect(doctor.stdout + doctor.stderr).toContain(`${dir} is 0755`)
    const node = await inProcessNode(dir)
    try {
      const m = modes(dir)
      expect(Object.entries(m).filter(([name, mode]) => mode !== (name === '.' ? '700' : '600'))).toEqual([])
      expect(Object.keys(m)).toEqual(expect.arrayContaining(['cairn.db-wal', 'node.json', 'config.json']))
    } finally {
      await node.stop()
    }
  })

  test('a node killed with SIGKILL leaves no file that others may read, whatever the umask it was started with', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    const umask = process.umask(0o022)
    try {
      await a.start()
    } finally {
      process.umask(umask)
    }
    await a.publish({ type: 'test.modes', payload: {} })
    await a.stop('SIGKILL')
    expect(looseModes(a.dir)).toEqual([])
  })
})
