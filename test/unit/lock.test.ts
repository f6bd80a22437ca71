import { describe, expect, test } from 'bun:test'
import { chmodSync, copyFileSync, existsSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { dataPaths } from '../../src/datadir/layout.ts'
import { judgeLock, lockDataDir, processStart, removeStaleLock, runningPid } from '../../src/datadir/lock.ts'
import { deadPid, liveStranger, tempDir, waitFor } from '../helpers/process.ts'

describe('run.lock', () => {
  test('holds the pid alone, as every cairn reads it, with the start time beside it; released, both are gone', () => {
    using tmp = tempDir()
    const lock = dataPaths(tmp.path).lock
    const release = lockDataDir(tmp.path)
    expect(readFileSync(lock, 'utf8')).toBe(String(process.pid))
    const record = JSON.parse(readFileSync(`${lock}.start`, 'utf8'))
    expect(record).toEqual({ pid: process.pid, start: processStart(process.pid) })
    expect(record.start).toMatch(/^\d+@[0-9a-f-]+$/)
    expect(runningPid(tmp.path)).toBe(process.pid)
    expect(() => lockDataDir(tmp.path)).not.toThrow()
    release()
    expect(runningPid(tmp.path)).toBeUndefined()
    expect(existsSync(lock)).toBe(false)
    expect(existsSync(`${lock}.start`)).toBe(false)
  })

  test('the start time is read after the command name, whatever spaces and parentheses the name holds', async () => {
    using tmp = tempDir()
    const lock = dataPaths(tmp.path).lock
    const odd = join(tmp.path, 'sl) 1 2 (eep')
    copyFileSync('/bin/sleep', odd)
    chmodSync(odd, 0o755)
    const proc = Bun.spawn([odd, '600'], { stdin: 'ignore', stdout: 'ignore', stderr: 'ignore' })
    try {
      const stat = readFileSync(`/proc/${proc.pid}/stat`, 'utf8')
      expect(stat).toContain('(sl) 1 2 (eep)')
      expect(processStart(proc.pid)?.split('@')[0]).toBe(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19])
      writeFileSync(lock, `${proc.pid}\n`)
      // A lock whose recorded start is this process's is held; with another start time it is not.
      writeFileSync(`${lock}.start`, JSON.stringify({ pid: proc.pid, start: processStart(proc.pid) }))
      expect(runningPid(tmp.path)).toBe(proc.pid)
      writeFileSync(`${lock}.start`, JSON.stringify({ pid: proc.pid, start: `1@${processStart(proc.pid)?.split('@')[1]}` }))
      expect(runningPid(tmp.path)).toBeUndefined()
      // A start recorded for another pid (left by a crashed node before an older cairn took the lock) is not this one's:
      // without a start of its own, as with no start file at all, the pid decides.
      writeFileSync(`${lock}.start`, JSON.stringify({ pid: proc.pid + 1, start: '1@x' }))
      expect(runningPid(tmp.path)).toBe(proc.pid)
      writeFileSync(`${lock}.start`, 'not json')
      expect(runningPid(tmp.path)).toBe(proc.pid)
    } finally {
      proc.kill()
      await proc.exited
    }
    expect(runningPid(tmp.path)).toBeUndefined()
  })

  test("a start recorded before run.lock was written is an earlier lock's: an older cairn that took the lock over as the same pid (a container's pid 1) holds it while it lives", async () => {
    using tmp = tempDir()
    const lock = dataPaths(tmp.path).lock
    await using proc = liveStranger()
    const boot = processStart(proc.pid)?.split('@')[1]
    // A node with this pid crashed and left its start; an older cairn with the same pid took the lock over
    // (it removes run.lock alone) and runs now.
    writeFileSync(`${lock}.start`, `${JSON.stringify({ pid: proc.pid, start: `1@${boot}` })}\n`)
    const earlier = new Date(Date.now() - 3_600_000)
    utimesSync(`${lock}.start`, earlier, earlier)
    writeFileSync(lock, String(proc.pid))
    expect(runningPid(tmp.path)).toBe(proc.pid)
    expect(() => lockDataDir(tmp.path)).toThrow(`a node (pid ${proc.pid}) is already running`)
    expect(readFileSync(lock, 'utf8')).toBe(String(proc.pid))
    // The same record written after the lock is that lock's: the process with the pid now started later, so the lock is stale.
    const later = new Date(Date.now() + 60_000)
    utimesSync(`${lock}.start`, later, later)
    expect(runningPid(tmp.path)).toBeUndefined()
  })

  test('a stale lock is taken over only as the very file judged stale: one another process put in place meanwhile stays', () => {
    using tmp = tempDir()
    const lock = dataPaths(tmp.path).lock
    writeFileSync(lock, '999999999')
    const judged = judgeLock(lock)!
    // Another process took the stale lock over first: removed it and placed its own.
    rmSync(lock)
    writeFileSync(lock, String(process.pid))
    expect(removeStaleLock(lock, judged)).toBe(false)
    expect(readFileSync(lock, 'utf8')).toBe(String(process.pid))
    // Judged as it is now, it goes.
    expect(removeStaleLock(lock, judgeLock(lock)!)).toBe(true)
    expect(existsSync(lock)).toBe(false)
    // Gone already (another process removed it): nothing to do.
    expect(removeStaleLock(lock, judged)).toBe(true)
    expect(readdirSync(tmp.path)).toEqual([])
  })

  test('of several processes taking one stale lock over at once, exactly one gets it, and no file is left aside', async () => {
    using tmp = tempDir()
    const lock = dataPaths(tmp.path).lock
    const dead = await deadPid()
    writeFileSync(lock, String(dead))
    const script = join(tmp.path, 'take.ts')
    writeFileSync(
      script,
      `import { lockDataDir } from ${JSON.stringify(join(import.meta.dir, '../../src/datadir/lock.ts'))}
try { lockDataDir(${JSON.stringify(tmp.path)}); console.log('got') } catch (err) { console.log('busy') }
for await (const _ of Bun.stdin.stream()) {}
`
    )
    const procs = Array.from({ length: 6 }, () => Bun.spawn([process.execPath, script], { stdin: 'pipe', stdout: 'pipe', stderr: 'ignore' }))
    const lines: string[] = []
    const firstLine = async (stream: ReadableStream<Uint8Array>): Promise<void> => {
      const reader = stream.getReader()
      let text = ''
      while (!text.includes('\n')) {
        const { value, done } = await reader.read()
        if (done) break
        text += new TextDecoder().decode(value)
      }
      lines.push(text.trim())
    }
    for (const p of procs) void firstLine(p.stdout)
    try {
      // Each has tried once it answers; the one that got the lock holds it until its stdin ends.
      await waitFor('every process to answer', () => lines.length === procs.length, 20_000, 10)
      for (const p of procs) p.stdin.end()
      await Promise.all(procs.map(async (p) => await p.exited))
      expect(lines.filter((l) => l === 'got').length).toBe(1)
      expect(lines.filter((l) => l === 'busy').length).toBe(procs.length - 1)
      expect(readdirSync(tmp.path).filter((f) => f.includes('.stale.') || f.endsWith('.tmp'))).toEqual([])
    } finally {
      for (const p of procs) p.kill()
    }
  })
})

/**
 * Runs `body` in a bun process of its own whose node:fs has `mocks` (source of an object literal's members,
 * which may use `real`, the unmocked module), with lock.ts's exports and `dir` in scope; @returns what it printed, parsed.
 */
function inProcessWithFs(dir: string, mocks: string, body: string, env: Record<string, string> = {}): unknown {
  using scripts = tempDir()
  const script = join(scripts.path, 'script.ts')
  writeFileSync(
    script,
    `import { mock } from 'bun:test'
import * as fs from 'node:fs'
const real = { ...fs }
const dir = ${JSON.stringify(dir)}
const lock = ${JSON.stringify(dataPaths(dir).lock)}
mock.module('node:fs', () => ({ ...real, ${mocks} }))
const { judgeLock, lockDataDir, processStart, removeStaleLock, runningPid } = await import(${JSON.stringify(join(import.meta.dir, '../../src/datadir/lock.ts'))})
${body}
`
  )
  const proc = Bun.spawnSync([process.execPath, script], { env: { ...process.env, ...env }, stdout: 'pipe', stderr: 'pipe' })
  if (proc.exitCode !== 0) throw new Error(`script failed: ${proc.stderr.toString()}`)
  return JSON.parse(proc.stdout.toString())
}

describe('run.lock on a file system without hard links', () => {
  for (const code of ['EPERM', 'ENOSYS']) {
    test(`(link fails with ${code}) is created in place, and a live lock moved aside by a process that judged an earlier one stale goes back`, () => {
      using tmp = tempDir()
      const out = inProcessWithFs(
        tmp.path,
        `linkSync: () => { throw Object.assign(new Error('${code}: link'), { code: '${code}' }) }`,
        `const release = lockDataDir(dir)
const held = real.readFileSync(lock, 'utf8')
release()
real.writeFileSync(lock, '999999999')
const judged = judgeLock(lock)
// Another process took that stale lock over first and holds it.
real.rmSync(lock)
real.writeFileSync(lock, String(process.pid))
const removed = removeStaleLock(lock, judged)
console.log(JSON.stringify({ held, removed, now: real.existsSync(lock) ? real.readFileSync(lock, 'utf8') : null, files: real.readdirSync(dir).sort() }))`
      ) as { held: string; removed: boolean; now: string | null; files: string[] }
      expect(out.held).toMatch(/^\d+$/)
      expect(out.removed).toBe(false)
      expect(out.now).toBe(out.held)
      expect(out.files).toEqual(['run.lock'])
    })
  }
})

describe('run.lock taken over', () => {
  test('the start record of a process that took the directory in the meantime stays', async () => {
    using tmp = tempDir()
    const lock = dataPaths(tmp.path).lock
    const dead = await deadPid()
    writeFileSync(lock, String(dead))
    writeFileSync(`${lock}.start`, JSON.stringify({ pid: dead, start: '1@x' }))
    // This test's process plays the one that takes the stale lock over between the other's look and its rename:
    // the lock is gone when the other renames, and in place with its start record right after.
    const out = inProcessWithFs(
      tmp.path,
      `renameSync: (from, to) => {
  if (from !== lock || real.existsSync(lock + '.taken')) return real.renameSync(from, to)
  real.writeFileSync(lock + '.taken', '')
  real.rmSync(lock)
  try {
    return real.renameSync(from, to)
  } finally {
    real.writeFileSync(lock, String(process.ppid))
    real.writeFileSync(lock + '.start', JSON.stringify({ pid: process.ppid, start: taker }))
  }
}`,
      `let taker = processStart(process.ppid)
let error = ''
try { lockDataDir(dir) } catch (err) { error = err.message }
console.log(JSON.stringify({ error, start: real.existsSync(lock + '.start') ? JSON.parse(real.readFileSync(lock + '.start', 'utf8')) : null }))`
    ) as { error: string; start: unknown }
    expect(out.error).toContain(`a node (pid ${process.pid}) is already running`)
    expect(out.start).toEqual({ pid: process.pid, start: processStart(process.pid) })
    expect(runningPid(tmp.path)).toBe(process.pid)
  })
})

test('a lock that cannot be written (a read-only data directory) fails with an error naming run.lock and why, not a crash', () => {
  using tmp = tempDir()
  const out = inProcessWithFs(
    tmp.path,
    `writeFileSync: (path, ...rest) => {
  if (String(path).startsWith(lock)) throw Object.assign(new Error(\`EROFS: read-only file system, open '\${path}'\`), { code: 'EROFS' })
  return real.writeFileSync(path, ...rest)
}`,
    `try { lockDataDir(dir); console.log(JSON.stringify({})) } catch (err) { console.log(JSON.stringify({ name: err.name, message: err.message })) }`
  ) as { name?: string; message?: string }
  expect(out.name).toBe('DataDirError')
  expect(out.message).toStartWith(`Cannot run: cannot create ${dataPaths(tmp.path).lock}: EROFS: read-only file system`)
})

test('an empty lock is one being written (no hard links, or an older cairn): taken over only once it is old', () => {
  using tmp = tempDir()
  const lock = dataPaths(tmp.path).lock
  writeFileSync(lock, '')
  expect(() => lockDataDir(tmp.path)).toThrow(`Cannot run: another cairn is taking ${tmp.path} (${lock} has no pid yet)`)
  expect(readFileSync(lock, 'utf8')).toBe('')
  // Left by a crash between creating it and writing the pid.
  const earlier = new Date(Date.now() - 60_000)
  utimesSync(lock, earlier, earlier)
  const release = lockDataDir(tmp.path)
  expect(readFileSync(lock, 'utf8')).toBe(String(process.pid))
  release()
})
