import { describe, expect, test } from 'bun:test'
import { existsSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs'
import { totalmem } from 'node:os'
import { join } from 'node:path'
import { cairnCommand, collectText, crashLines, initDir, TEST_ENV, tempDir, waitFor } from './helpers/process.ts'
import { cgroupMemoryLimit, LOW_MEMORY_LIMIT, memoryLimit, memoryLimitWarnings } from '../src/runtime/memoryTarget.ts'

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
  test('the warnings name the limit and the size it needs, or the parent cgroup the engine does not see; none with room', () => {
    const MiB = 1024 * 1024
    expect(memoryLimitWarnings(undefined)).toEqual([])
    expect(memoryLimitWarnings({ bytes: LOW_MEMORY_LIMIT, seen: true })).toEqual([])
    expect(memoryLimitWarnings({ bytes: 512 * MiB, seen: true })).toEqual([])
    const low = memoryLimitWarnings({ bytes: 128 * MiB, seen: true })
    expect(low.map((w) => w.reason)).toEqual(['memory_limit_low'])
    expect(low[0].message).toContain('128 MiB')
    expect(low[0].message).toContain('below 160 MiB')
    const unseen = memoryLimitWarnings({ bytes: 300 * MiB, seen: false })
    expect(unseen.map((w) => w.reason)).toEqual(['memory_limit_unseen'])
    expect(unseen[0].message).toContain('300 MiB')
    // a parent's limit over what a node reaches without one is no danger, seen or not
    expect(memoryLimitWarnings({ bytes: 2048 * MiB, seen: false })).toEqual([])
    // the lower of the runtime's answer (its own cgroup) and the hierarchy's, and whether the runtime saw it
    expect(memoryLimit(undefined, undefined)).toBeUndefined()
    expect(memoryLimit(512 * MiB, 512 * MiB)).toEqual({ bytes: 512 * MiB, seen: true })
    expect(memoryLimit(undefined, 300 * MiB)).toEqual({ bytes: 300 * MiB, seen: false })
    expect(memoryLimit(512 * MiB, 300 * MiB)).toEqual({ bytes: 300 * MiB, seen: false })
    // a limit at or over the machine's RAM limits nothing (the runtime reports none for it): no limit, nothing unseen
    expect(memoryLimit(undefined, 2048 * MiB, 1024 * MiB)).toBeUndefined()
    expect(memoryLimit(undefined, 1024 * MiB, 1024 * MiB)).toBeUndefined()
    expect(memoryLimit(512 * MiB, 4096 * MiB, 1024 * MiB)).toEqual({ bytes: 512 * MiB, seen: true })
    expect(memoryLimit(undefined, 768 * MiB, 1024 * MiB)).toEqual({ bytes: 768 * MiB, seen: false })
    // This machine's own answer is a limit or none, never a throw.
    const mine = memoryLimit()
    expect(mine == null || mine.bytes > 0).toBe(true)
  })

  test('the hierarchy’s limit is the lowest on the way from the own cgroup to the root, in v1 and in v2; "max" and v1’s "unlimited" are none', () => {
    using tmp = tempDir()
    const put = (path: string, text: string): void => {
      mkdirSync(join(tmp.path, path, '..'), { recursive: true })
      writeFileSync(join(tmp.path, path), text)
    }
    const files = (self: string) => ({ self, v1: join(tmp.path, 'v1'), v2: join(tmp.path, 'v2') })
    put('v1/memory.limit_in_bytes', '9223372036854771712\n')
    put('v1/slice/memory.limit_in_bytes', '314572800\n')
    put('v1/slice/svc/memory.limit_in_bytes', '9223372036854771712\n')
    expect(cgroupMemoryLimit(files('5:memory:/slice/svc\n0::/\n'))).toBe(314572800)
    put('v2/slice/memory.max', 'max\n')
    put('v2/slice/svc/memory.max', '536870912\n')
    expect(cgroupMemoryLimit(files('0::/slice/svc\n'))).toBe(536870912)
    put('v2/slice/memory.max', '268435456\n')
    expect(cgroupMemoryLimit(files('0::/slice/svc\n'))).toBe(268435456)
    expect(cgroupMemoryLimit(files('0::/elsewhere\n'))).toBeUndefined()
    expect(cgroupMemoryLimit(files(''))).toBeUndefined()
    // a v1 hierarchy of several controllers, and colons in a path
    put('v1/a:b/memory.limit_in_bytes', '209715200\n')
    expect(cgroupMemoryLimit(files('7:cpu,memory,cpuacct:/a:b\n0::/\n'))).toBe(209715200)
    // 0, an empty file and garbage are no limit
    put('v2/odd/memory.max', '0\n')
    put('v2/odd/a/memory.max', '\n')
    put('v2/odd/a/b/memory.max', '12abc\n')
    expect(cgroupMemoryLimit(files('0::/odd/a/b\n'))).toBeUndefined()
    // A path that leaves the cgroup namespace's root names a cgroup outside the mount: no cgroup under it is one of
    // its ancestors, not even the mount's root (a limit there is not the process's).
    put('v2/memory.max', '104857600\n')
    expect(cgroupMemoryLimit(files('0::/slice/svc\n'))).toBe(104857600)
    expect(cgroupMemoryLimit(files('0::/../slice/svc\n'))).toBeUndefined()
  })

  const cgroups = memoryCgroupBase()

  /** @returns the JSON log lines of the binary started in a memory cgroup of `mib` MiB, up to `node started` */
  async function startIn(mib: number, on: 'own' | 'parent' = 'own'): Promise<Array<Record<string, unknown>>> {
    using tmp = tempDir()
    const dir = await initDir(tmp.path, 'n')
    const parent = join(cgroups!.base, `cairn-test-${process.pid}`)
    // the node's own cgroup: the limited one, or a child of it without a limit of its own
    const cg = on === 'own' ? parent : join(parent, 'node')
    mkdirSync(cg, { recursive: true })
    try {
      writeFileSync(join(parent, cgroups!.limit), String(mib * 1024 * 1024))
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
      if (cg !== parent) rmdirSync(parent)
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

  test.skipIf(cgroups == null)('a limit over the machine’s RAM is none: nothing logged, no warning that the engine misses it', async () => {
    const lines = await startIn(Math.ceil((2 * totalmem()) / (1024 * 1024)))
    expect(lines.find((l) => l.msg === 'node started')).toBeDefined()
    expect(lines.find((l) => l.msg === 'node started')?.memory_limit_bytes).toBeUndefined()
    expect(lines.filter((l) => l.level === 'warn' || l.level === 'error')).toEqual([])
  })

  test.skipIf(cgroups == null)('a limit set only on a parent cgroup, which the engine does not read, is logged and named in a warning', async () => {
    const lines = await startIn(400, 'parent')
    expect(lines.find((l) => l.msg === 'node started')?.memory_limit_bytes).toBe(400 * 1024 * 1024)
    const warnings = lines.filter((l) => l.level === 'warn')
    expect(warnings.map((w) => w.reason)).toEqual(['memory_limit_unseen'])
    expect(String(warnings[0].msg)).toContain('400 MiB')
  })
})
