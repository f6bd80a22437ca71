import { describe, expect, test } from 'bun:test'
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Database } from 'bun:sqlite'
import type { Subprocess } from 'bun'
import { dataPaths } from '../../src/datadir/layout.ts'
import { lockDataDir, lockHolder, processStart, runningPid } from '../../src/datadir/lock.ts'
import { deadPid, liveStranger, ROOT, tempDir } from '../helpers/process.ts'

const LOCK_TS = join(import.meta.dir, '../../src/datadir/lock.ts')

/**
 * A process of its own that takes `dir` (`lockDataDir`), prints what happened as a JSON line, and once its stdin
 * ends releases it (unless `drop`: then it dropped the release function at once and collected the heap, and
 * exits holding it) and exits.
 */
class Taker {
  readonly proc: Subprocess<'pipe', 'pipe', 'ignore'>
  /** what it printed: `{ got: true }` or `{ got: false, name, message }` */
  readonly answer: Promise<{ got: boolean; name?: string; message?: string }>

  /** with `announce`: settles once it is about to take the lock (it printed `trying`) */
  readonly trying: Promise<void>

  constructor(scripts: string, dir: string, options: { command?: string[]; drop?: boolean; announce?: boolean } = {}) {
    const script = join(scripts, `take-${Math.random().toString(36).slice(2)}.ts`)
    writeFileSync(
      script,
      `import { lockDataDir } from ${JSON.stringify(LOCK_TS)}
let answer
let release = () => {}
${options.announce === true ? "console.log('trying')" : ''}
try {
  ${options.drop === true ? '' : 'release = '}lockDataDir(${JSON.stringify(dir)})
  answer = { got: true }
} catch (err) {
  answer = { got: false, name: err.name, message: err.message }
}
if (typeof Bun !== 'undefined') Bun.gc(true)
console.log(JSON.stringify(answer))
for await (const _ of process.stdin) {}
release()
`
    )
    const proc = Bun.spawn([...(options.command ?? [process.execPath]), script], { cwd: ROOT, stdin: 'pipe', stdout: 'pipe', stderr: 'ignore' })
    this.proc = proc
    const reader = proc.stdout.getReader()
    let text = ''
    /** @returns the next line it prints */
    const line = async (): Promise<string> => {
      while (!text.includes('\n')) {
        const { value, done } = await reader.read()
        if (done) throw new Error(`the taker exited with ${await proc.exited} before it answered`)
        text += new TextDecoder().decode(value)
      }
      const next = text.slice(0, text.indexOf('\n'))
      text = text.slice(next.length + 1)
      return next
    }
    this.trying = options.announce === true ? line().then(() => undefined) : Promise.resolve()
    this.answer = this.trying.then(async () => JSON.parse(await line()))
  }

  /** Ends its stdin (it releases what it took and exits) and waits for its exit. */
  async end(): Promise<number> {
    this.proc.stdin.end()
    return await this.proc.exited
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.proc.kill('SIGKILL')
    await this.proc.exited
  }
}

describe('the data directory lock', () => {
  test('run.lock holds the pid alone, as every cairn reads it, with the start time beside it; released, both are gone and instance.lock stays', async () => {
    using tmp = tempDir()
    const paths = dataPaths(tmp.path)
    const release = lockDataDir(tmp.path)
    expect(readFileSync(paths.lock, 'utf8')).toBe(String(process.pid))
    const record = JSON.parse(readFileSync(`${paths.lock}.start`, 'utf8'))
    expect(record).toEqual({ pid: process.pid, start: processStart(process.pid) })
    expect(record.start).toMatch(/^\d+@[0-9a-f-]+$/)
    expect(readdirSync(tmp.path).sort()).toEqual(['instance.lock', 'run.lock', 'run.lock.start'])
    expect(statSync(paths.instance).mode & 0o777).toBe(0o600)
    // Asked from this process as often as anyone likes (each probe opens and closes the file), the lock holds.
    for (let i = 0; i < 3; i++) expect(lockHolder(tmp.path)).toEqual({ pid: process.pid, here: true })
    // SQLite refuses a second holder in this process too.
    expect(() => lockDataDir(tmp.path)).toThrow(`Cannot run: a node (pid ${process.pid}) is already running on ${tmp.path}; stop it first, or use another --data directory`)
    {
      await using other = new Taker(tmp.path, tmp.path)
      expect(await other.answer).toEqual({
        got: false,
        name: 'DataDirBusyError',
        message: `Cannot run: a node (pid ${process.pid}) is already running on ${tmp.path}; stop it first, or use another --data directory`
      })
    }
    release()
    release()
    expect(runningPid(tmp.path)).toBeUndefined()
    expect(readdirSync(tmp.path).filter((f) => !f.startsWith('take-'))).toEqual(['instance.lock'])
    const again = lockDataDir(tmp.path)
    again()
  })

  test("a node's lock is seen by runningPid and refused to lockDataDir in other processes (Bun and Deno) while it lives, after the holder dropped its release function", async () => {
    using tmp = tempDir()
    await using holder = new Taker(tmp.path, tmp.path, { drop: true })
    expect(await holder.answer).toEqual({ got: true })
    expect(runningPid(tmp.path)).toBe(holder.proc.pid)
    expect(lockHolder(tmp.path)).toEqual({ pid: holder.proc.pid, here: true })
    const busy = `Cannot run: a node (pid ${holder.proc.pid}) is already running on ${tmp.path}; stop it first, or use another --data directory`
    expect(() => lockDataDir(tmp.path)).toThrow(busy)
    {
      await using deno = new Taker(tmp.path, tmp.path, { command: [join(ROOT, 'node_modules', '.bin', 'deno'), 'run', '-A'] })
      expect(await deno.answer).toEqual({ got: false, name: 'DataDirBusyError', message: busy })
    }
    // run.lock naming a live process that is not the holder: what a node in another container sees (there the holder is pid 1, as it is).
    await using stranger = liveStranger()
    const record = readFileSync(`${dataPaths(tmp.path).lock}.start`, 'utf8')
    writeFileSync(dataPaths(tmp.path).lock, String(stranger.pid))
    writeFileSync(`${dataPaths(tmp.path).lock}.start`, record.replace(String(holder.proc.pid), String(stranger.pid)))
    expect(lockHolder(tmp.path)).toEqual({ pid: stranger.pid, here: false })
    expect(() => lockDataDir(tmp.path)).toThrow(
      `Cannot run: a node is already running on ${tmp.path} as pid ${stranger.pid} of another container or host sharing the directory; stop it first, or use another --data directory`
    )
    // run.lock removed by hand: the directory is held all the same.
    rmSync(dataPaths(tmp.path).lock)
    expect(lockHolder(tmp.path)).toEqual({ pid: undefined, here: false })
    expect(() => lockDataDir(tmp.path)).toThrow(`Cannot run: a node is already running on ${tmp.path} (it holds ${dataPaths(tmp.path).instance}; its run.lock names no pid)`)
    expect(await holder.end()).toBe(0)
    expect(lockHolder(tmp.path)).toBeUndefined()
  })

  test('a holder killed with SIGKILL leaves its files, but the kernel freed its lock: the next start takes the directory', async () => {
    using tmp = tempDir()
    const paths = dataPaths(tmp.path)
    const holder = new Taker(tmp.path, tmp.path)
    expect(await holder.answer).toEqual({ got: true })
    holder.proc.kill('SIGKILL')
    await holder.proc.exited
    expect(readFileSync(paths.lock, 'utf8')).toBe(String(holder.proc.pid))
    expect(runningPid(tmp.path)).toBeUndefined()
    const release = lockDataDir(tmp.path)
    expect(readFileSync(paths.lock, 'utf8')).toBe(String(process.pid))
    expect(JSON.parse(readFileSync(`${paths.lock}.start`, 'utf8')).pid).toBe(process.pid)
    release()
  })

  test("a stale run.lock naming a live process (its pid reused, or this very process: a container's pid 1) with another start, or an empty one, is replaced; leftovers of older takeovers go", async () => {
    using tmp = tempDir()
    const paths = dataPaths(tmp.path)
    await using stranger = liveStranger()
    const boot = processStart(stranger.pid)?.split('@')[1]
    const dead = await deadPid()
    for (const [pid, start] of [
      [String(stranger.pid), JSON.stringify({ pid: stranger.pid, start: `1@${boot}` })],
      [String(process.pid), JSON.stringify({ pid: process.pid, start: `1@${boot}` })],
      [String(process.pid), null],
      ['', null]
    ] as const) {
      writeFileSync(paths.lock, pid)
      if (start != null) writeFileSync(`${paths.lock}.start`, start)
      writeFileSync(`${paths.lock}.stale.${dead}`, '1')
      writeFileSync(`${paths.lock}.${dead}.tmp`, '1')
      writeFileSync(`${paths.lock}.stale.${stranger.pid}`, '1')
      expect(runningPid(tmp.path)).toBeUndefined()
      const release = lockDataDir(tmp.path)
      expect(readFileSync(paths.lock, 'utf8')).toBe(String(process.pid))
      expect(readdirSync(tmp.path).sort()).toEqual(['instance.lock', 'run.lock', 'run.lock.stale.' + stranger.pid, 'run.lock.start'])
      release()
    }
  })

  test('runningPid on a directory no node of this version ran on creates nothing in it', () => {
    using tmp = tempDir()
    expect(runningPid(tmp.path)).toBeUndefined()
    expect(lockHolder(join(tmp.path, 'missing'))).toBeUndefined()
    expect(readdirSync(tmp.path)).toEqual([])
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

  test('of three processes starting at once on a stale lock, exactly one gets the directory and the others say who has it', async () => {
    using tmp = tempDir()
    const paths = dataPaths(tmp.path)
    const dead = await deadPid()
    writeFileSync(paths.lock, String(dead))
    writeFileSync(`${paths.lock}.start`, JSON.stringify({ pid: dead, start: '1@x' }))
    const takers = Array.from({ length: 3 }, () => new Taker(tmp.path, tmp.path))
    try {
      const answers = await Promise.all(takers.map(async (t) => await t.answer))
      const winners = takers.filter((_, i) => answers[i].got)
      expect(winners.length).toBe(1)
      const winner = winners[0].proc.pid
      expect(answers.filter((a) => !a.got)).toEqual(
        Array.from({ length: 2 }, () => ({
          got: false,
          name: 'DataDirBusyError',
          message: `Cannot run: a node (pid ${winner}) is already running on ${tmp.path}; stop it first, or use another --data directory`
        }))
      )
      expect(lockHolder(tmp.path)).toEqual({ pid: winner, here: true })
      expect(await Promise.all(takers.map(async (t) => await t.end()))).toEqual([0, 0, 0])
      expect(readdirSync(tmp.path).filter((f) => !f.startsWith('take-'))).toEqual(['instance.lock'])
    } finally {
      for (const t of takers) await t[Symbol.asyncDispose]()
    }
  })

  test('a start waiting for instance.lock keeps no lock between its tries, so that the process ahead of it gets the lock it waits for', async () => {
    using tmp = tempDir()
    // The process ahead: it holds the reserved lock and, to commit, needs the exclusive one, which every shared
    // lock refuses (as a start does that reached the reserved lock first while another tries).
    const ahead = new Database(dataPaths(tmp.path).instance)
    try {
      ahead.run('PRAGMA busy_timeout = 1500')
      ahead.run('BEGIN IMMEDIATE')
      ahead.run('CREATE TABLE t (x)')
      const taker = new Taker(tmp.path, tmp.path, { announce: true })
      try {
        await taker.trying
        // Between its tries (a few milliseconds each, for up to 2 s) the taker holds no lock: one that kept the shared
        // lock of its first try would hold it all the while, and the process ahead could never commit.
        const inode = statSync(dataPaths(tmp.path).instance).ino
        let holding = 0
        const samples = 100
        for (let i = 0; i < samples; i++) {
          if (locksOn(inode).includes(taker.proc.pid)) holding++
          await Bun.sleep(5)
        }
        expect(holding).toBeLessThan(samples / 2)
        ahead.run('COMMIT')
        ahead.close()
        expect(await taker.answer).toEqual({ got: true })
        expect(await taker.end()).toBe(0)
      } finally {
        await taker[Symbol.asyncDispose]()
      }
    } finally {
      ahead.close()
    }
  })

  test('under Deno (node:sqlite, whose read-only connections wait up to 5 s for a lock) a start takes a free directory, and asking who holds a held one answers, without waiting', async () => {
    using tmp = tempDir()
    using scripts = tempDir()
    const script = join(scripts.path, 'timed.ts')
    writeFileSync(
      script,
      `import { lockDataDir, lockHolder } from ${JSON.stringify(LOCK_TS)}
const dir = ${JSON.stringify(tmp.path)}
const at = Date.now()
if (Deno.args[0] === 'take') lockDataDir(dir)()
else lockHolder(dir)
console.log(Date.now() - at)
`
    )
    const timed = async (what: 'take' | 'ask'): Promise<number> => {
      const proc = Bun.spawn([join(ROOT, 'node_modules', '.bin', 'deno'), 'run', '-A', script, what], { cwd: ROOT, stdout: 'pipe', stderr: 'inherit' })
      const out = await new Response(proc.stdout).text()
      expect(await proc.exited).toBe(0)
      return Number(out.trim())
    }
    // A start's own probe of the lock it took (is it exclusive?) is a read-only connection's, as is asking.
    expect(await timed('take')).toBeLessThan(2000)
    const release = lockDataDir(tmp.path)
    try {
      expect(await timed('ask')).toBeLessThan(2000)
    } finally {
      release()
    }
  })
})

/** @returns the pids holding a POSIX lock on the file with inode `inode` (/proc/locks) */
function locksOn(inode: number): number[] {
  return readFileSync('/proc/locks', 'utf8')
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((fields) => fields[1] === 'POSIX' && fields[5]?.endsWith(`:${inode}`))
    .map((fields) => Number(fields[4]))
}

/**
 * Runs `body` in a bun process of its own whose node:fs has `mocks` (source of an object literal's members,
 * which may use `real`, the unmocked module), with lockDataDir, lockHolder and `dir` in scope; @returns what it printed, parsed.
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
const { lockDataDir, lockHolder } = await import(${JSON.stringify(LOCK_TS)})
${body}
`
  )
  const proc = Bun.spawnSync([process.execPath, script], { env: { ...process.env, ...env }, stdout: 'pipe', stderr: 'pipe' })
  if (proc.exitCode !== 0) throw new Error(`script failed: ${proc.stderr.toString()}`)
  return JSON.parse(proc.stdout.toString())
}

test('a lock that cannot be written (a read-only data directory) fails with an error naming run.lock and why, not a crash, and frees instance.lock', () => {
  using tmp = tempDir()
  const out = inProcessWithFs(
    tmp.path,
    `writeFileSync: (path, ...rest) => {
  if (String(path).startsWith(lock)) throw Object.assign(new Error(\`EROFS: read-only file system, open '\${path}'\`), { code: 'EROFS' })
  return real.writeFileSync(path, ...rest)
}`,
    `try { lockDataDir(dir); console.log(JSON.stringify({})) } catch (err) { console.log(JSON.stringify({ name: err.name, message: err.message, holder: lockHolder(dir) ?? null })) }`
  ) as { name?: string; message?: string; holder?: unknown }
  expect(out.name).toBe('DataDirError')
  expect(out.holder).toBeNull()
  expect(out.message).toStartWith(`Cannot run: cannot create ${dataPaths(tmp.path).lock}: EROFS: read-only file system`)
})

/**
 * Runs, as a process of its own, lockDataDir(dir) (released at once if taken) then lockHolder(dir), with `target`
 * (the directory, or a file in it) read-only: bind-mounted so in a mount namespace of its own, as a read-only
 * volume is. @returns what it saw, and the files of `dir` after; undefined when this machine cannot (no root, no unshare)
 */
function withReadOnly(target: string, dir: string): { error: string | null; holder: unknown; files: string[] } | undefined {
  using scripts = tempDir()
  const script = join(scripts.path, 'ro.ts')
  writeFileSync(
    script,
    `import { readdirSync } from 'node:fs'
import { lockDataDir, lockHolder } from ${JSON.stringify(LOCK_TS)}
const dir = ${JSON.stringify(dir)}
let error = null
try {
  lockDataDir(dir)()
} catch (err) {
  error = err.message
}
console.log(JSON.stringify({ error, holder: lockHolder(dir) ?? null, files: readdirSync(dir).sort() }))
`
  )
  let proc: { exitCode: number | null; stdout: Buffer; stderr: Buffer }
  try {
    proc = Bun.spawnSync(['unshare', '-m', 'sh', '-c', 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" || exit 99; exec "$2" "$3"', 'sh', target, process.execPath, script], {
      stdout: 'pipe',
      stderr: 'pipe'
    })
  } catch {
    return undefined
  }
  if (proc.exitCode === 99 || (proc.exitCode !== 0 && proc.stderr.toString().includes('unshare'))) return undefined
  if (proc.exitCode !== 0) throw new Error(`script failed: ${proc.stderr.toString()}`)
  return JSON.parse(proc.stdout.toString())
}

/** Whether this machine can make a directory read-only in a mount namespace of its own (root, util-linux's unshare). */
const MOUNT = (() => {
  using tmp = tempDir()
  return withReadOnly(tmp.path, tmp.path) != null
})()

describe(`a read-only data directory or instance.lock${MOUNT ? '' : " (skipped: needs root and util-linux's unshare -m)"}`, () => {
  test.skipIf(!MOUNT)('a start fails naming instance.lock and the read-only file system, holding nothing and writing nothing; asking who holds it creates nothing', () => {
    using tmp = tempDir()
    const fresh = join(tmp.path, 'fresh')
    const used = join(tmp.path, 'used')
    mkdirSync(fresh)
    mkdirSync(used)
    lockDataDir(used)()
    const instance = dataPaths(used).instance
    expect(withReadOnly(fresh, fresh)).toEqual({
      error: `Cannot run: cannot lock ${dataPaths(fresh).instance}: unable to open database file (EROFS: read-only file system, access '${fresh}')`,
      holder: null,
      files: []
    })
    // SQLite opens a file it cannot write read-only, where BEGIN EXCLUSIVE is a read transaction: a shared lock
    // that a second such process shares. So with instance.lock read-only, even in a writable directory, no start runs.
    const readOnly = {
      error: `Cannot run: cannot lock ${instance}: it opens read-only, and a read-only file holds no exclusive lock (EROFS: read-only file system, access '${instance}')`,
      holder: null,
      files: ['instance.lock']
    }
    expect(withReadOnly(used, used)).toEqual(readOnly)
    expect(withReadOnly(instance, used)).toEqual(readOnly)
  })
})
