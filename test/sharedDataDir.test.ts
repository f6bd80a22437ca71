import { describe, expect, test } from 'bun:test'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { cairn, NodeProcess, tempDir } from './helpers/process.ts'

describe('the CLI and the node sharing a data directory', () => {
  test('a lock left by a crashed node whose pid another live process has now does not block cairn run, and doctor calls it stale', async () => {
    using tmp = tempDir()
    await using node = await NodeProcess.init(tmp.path, 'n')
    await node.start()
    const crashed = node.proc!.pid
    expect(await node.stop('SIGKILL')).not.toBe(0)
    const lock = join(node.dir, 'run.lock')
    // The pid is reused: an unrelated live process has it now. The lock file stays as the node wrote it, but for the pid.
    const other = Bun.spawn(['sleep', '600'], { stdin: 'ignore', stdout: 'ignore', stderr: 'ignore' })
    try {
      const written = readFileSync(lock, 'utf8')
      expect(written).toContain(String(crashed))
      writeFileSync(lock, written.startsWith('{') ? `${JSON.stringify({ ...JSON.parse(written), pid: other.pid })}\n` : `${other.pid}\n`)
      const doctor = await cairn(['doctor', '--data', node.dir, '--json'])
      expect(JSON.parse(doctor.stdout).lock).toBe('stale (left by a crash; the next run takes it over)')
      await node.start()
      expect(JSON.parse(readFileSync(lock, 'utf8')).pid).toBe(node.proc!.pid)
      expect(await node.stop()).toBe(0)
    } finally {
      other.kill()
      await other.exited
    }
  })

  test('a lock file of an older cairn (the pid alone) naming a live process still blocks cairn run', async () => {
    using tmp = tempDir()
    const node = await NodeProcess.init(tmp.path, 'n')
    const other = Bun.spawn(['sleep', '600'], { stdin: 'ignore', stdout: 'ignore', stderr: 'ignore' })
    try {
      writeFileSync(join(node.dir, 'run.lock'), `${other.pid}\n`)
      const r = await cairn(['run', '--data', node.dir, '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'])
      expect({ code: r.code, stderr: r.stderr }).toEqual({
        code: 1,
        stderr: `cairn run: Cannot run: a node (pid ${other.pid}) is already running on ${node.dir}; stop it first, or use another --data directory\n`
      })
    } finally {
      other.kill()
      await other.exited
    }
  })

  test('a running node still blocks a second cairn run, naming its pid', async () => {
    using tmp = tempDir()
    await using node = await NodeProcess.init(tmp.path, 'n')
    await node.start()
    const r = await cairn(['run', '--data', node.dir, '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'])
    expect({ code: r.code, stderr: r.stderr }).toEqual({
      code: 1,
      stderr: `cairn run: Cannot run: a node (pid ${node.proc!.pid}) is already running on ${node.dir}; stop it first, or use another --data directory\n`
    })
    const doctor = await cairn(['doctor', '--data', node.dir, '--json'])
    expect(JSON.parse(doctor.stdout).lock).toBe(`held by running pid ${node.proc!.pid}`)
    expect(await node.stop()).toBe(0)
  })
})
