import { describe, expect, test } from 'bun:test'
import { existsSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { cairnCommand, collectText, crashLines, initDir, TEST_ENV, tempDir, waitFor } from './helpers/process.ts'
import { LOW_MEMORY_LIMIT, memoryLimit, memoryLimitWarning } from '../src/runtime/memoryTarget.ts'

/** Where this process may make a memory cgroup (root, cgroup v1's memory controller or v2's), and the file of its limit. */
interface CgroupBase {
  base: string
  limit: string
}

/** @returns the first base where a child cgroup with a memory limit can be made (a probe one is made and removed), else undefined */
function memoryCgroupBase(): CgroupBase | undefined {
  const candidates: CgroupBase[] = [
    { base: '/sys/fs/cgroup/memory', limit: 'memory.limit_in_bytes' },
    { base: '/sys/fs/cgroup', limit: 'memory.max' }
  ]
  for (const c of candidates) {
    const probe = join(c.base, `cairn-probe-${process.pid}`)
    try {
      mkdirSync(probe)
    } catch {
      continue
    }
    const usable = existsSync(join(probe, c.limit))
    rmdirSync(probe)
    if (usable) return c
  }
  return undefined
}

describe('a memory limit', () => {
  test('the warning names the limit and the size it needs; none without a limit or with room', () => {
    expect(memoryLimitWarning(undefined)).toBeUndefined()
    expect(memoryLimitWarning(LOW_MEMORY_LIMIT)).toBeUndefined()
    expect(memoryLimitWarning(512 * 1024 * 1024)).toBeUndefined()
    const w = memoryLimitWarning(128 * 1024 * 1024)
    expect(w).toContain('128 MiB')
    expect(w).toContain('below 160 MiB')
    // This machine's own answer is a number or none, never a throw.
    const mine = memoryLimit()
    expect(mine == null || mine > 0).toBe(true)
  })

  const cgroups = memoryCgroupBase()

  /** @returns the JSON log lines of the binary started in a memory cgroup of `mib` MiB, up to `node started` */
  async function startIn(mib: number): Promise<Array<Record<string, unknown>>> {
    using tmp = tempDir()
    const dir = await initDir(tmp.path, 'n')
    const cg = join(cgroups!.base, `cairn-test-${process.pid}`)
    mkdirSync(cg)
    try {
      writeFileSync(join(cg, cgroups!.limit), String(mib * 1024 * 1024))
      // The shell joins the cgroup, then becomes the node: the limit applies from the node's first instruction.
      const command = cairnCommand('binary', ['run', '--data', dir, '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0', '--log-format', 'json'])
      const proc = Bun.spawn(['sh', '-c', `echo $$ > '${join(cg, 'cgroup.procs')}' && exec "$@"`, 'sh', ...command], {
        env: { ...process.env, ...TEST_ENV },
        stdout: 'ignore',
        stderr: 'pipe'
      })
      const stderr = collectText(proc.stderr)
      try {
        await waitFor('the node to start', () => {
          if (proc.exitCode != null) throw new Error(`the node exited with ${proc.exitCode} before it started: ${stderr.text()}`)
          return stderr.text().includes('"node started"')
        })
        expect(crashLines(stderr.text())).toEqual([])
        return stderr
          .text()
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as Record<string, unknown>)
      } finally {
        proc.kill('SIGTERM')
        await proc.exited
        await stderr.done
      }
    } finally {
      rmdirSync(cg)
    }
  }

  test.skipIf(cgroups == null)('a node started in a cgroup of 150 MiB logs the limit and warns that it is low, with its reason', async () => {
    const lines = await startIn(150)
    expect(lines.find((l) => l.msg === 'node started')?.memory_limit_bytes).toBe(150 * 1024 * 1024)
    const warning = lines.find((l) => l.reason === 'memory_limit_low')
    expect(warning?.level).toBe('warn')
    expect(String(warning?.msg)).toContain('150 MiB')
  })

  test.skipIf(cgroups == null)('in a cgroup of 512 MiB it logs the limit and warns of nothing', async () => {
    const lines = await startIn(512)
    expect(lines.find((l) => l.msg === 'node started')?.memory_limit_bytes).toBe(512 * 1024 * 1024)
    expect(lines.filter((l) => l.level === 'warn' || l.level === 'error')).toEqual([])
  })
})
