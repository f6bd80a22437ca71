import { describe, expect, test } from 'bun:test'
import { chmodSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { dataPaths } from '../../src/datadir/layout.ts'
import { lockDataDir, processStart, runningPid } from '../../src/datadir/lock.ts'
import { tempDir } from '../helpers/process.ts'

describe('run.lock', () => {
  test('names the process that wrote it by pid and start time; released, it is gone', () => {
    using tmp = tempDir()
    const release = lockDataDir(tmp.path)
    const record = JSON.parse(readFileSync(dataPaths(tmp.path).lock, 'utf8'))
    expect(record).toEqual({ pid: process.pid, start: processStart(process.pid) })
    expect(record.start).toMatch(/^\d+@[0-9a-f-]+$/)
    expect(runningPid(tmp.path)).toBe(process.pid)
    expect(() => lockDataDir(tmp.path)).not.toThrow()
    release()
    expect(runningPid(tmp.path)).toBeUndefined()
  })

  test('the start time is read after the command name, whatever spaces and parentheses the name holds', async () => {
    using tmp = tempDir()
    const odd = join(tmp.path, 'sl) 1 2 (eep')
    copyFileSync('/bin/sleep', odd)
    chmodSync(odd, 0o755)
    const proc = Bun.spawn([odd, '600'], { stdin: 'ignore', stdout: 'ignore', stderr: 'ignore' })
    try {
      const stat = readFileSync(`/proc/${proc.pid}/stat`, 'utf8')
      expect(stat).toContain('(sl) 1 2 (eep)')
      expect(processStart(proc.pid)?.split('@')[0]).toBe(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19])
      // A lock that names this process with its own start time is held; with another start time it is not.
      writeFileSync(dataPaths(tmp.path).lock, JSON.stringify({ pid: proc.pid, start: processStart(proc.pid) }))
      expect(runningPid(tmp.path)).toBe(proc.pid)
      writeFileSync(dataPaths(tmp.path).lock, JSON.stringify({ pid: proc.pid, start: `1@${processStart(proc.pid)?.split('@')[1]}` }))
      expect(runningPid(tmp.path)).toBeUndefined()
      // Where the writer could not tell its start time (no /proc), or an older cairn wrote the pid alone, the pid decides.
      writeFileSync(dataPaths(tmp.path).lock, JSON.stringify({ pid: proc.pid, start: null }))
      expect(runningPid(tmp.path)).toBe(proc.pid)
      writeFileSync(dataPaths(tmp.path).lock, `${proc.pid}\n`)
      expect(runningPid(tmp.path)).toBe(proc.pid)
    } finally {
      proc.kill()
      await proc.exited
    }
    expect(runningPid(tmp.path)).toBeUndefined()
  })
})
