import { describe, expect, test } from 'bun:test'
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { initDataDir } from '../src/datadir/init.ts'
import { dataPaths } from '../src/datadir/layout.ts'
import { inProcessNode } from './helpers/forge.ts'
import { cairn, tempDir } from './helpers/process.ts'

describe('a data directory that lost a file, or that this user may not read', () => {
  test('without identity.key: cairn init refuses a directory a node ran on, leaving it as it is, and cairn run and doctor say the identity is missing; an init cut short is completed', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'node')
    const p = dataPaths(dir)
    await initDataDir(dir, { newNetwork: true })
    await (await inProcessNode(dir)).stop()
    rmSync(p.identity)
    const before = Object.fromEntries([p.swarmKey, p.apiToken, p.database].map((f) => [f, readFileSync(f)]))
    const missing = `${dir} holds cairn.db, blocks.db, swarm.key, api.token, instance.lock but no identity.key: this node's identity is missing. Restore identity.key from a backup (docs/operations.md, "Backups"); a new identity over this cairn.db would publish its outbox under another peer id. To start over as a new node, use a new directory (cairn init --data NEWDIR --join FILE)`
    const init = await cairn(['init', '--data', dir, '--new-network'])
    expect(init).toEqual({ code: 1, stdout: '', stderr: `cairn init: ${missing}\n` })
    for (const [f, bytes] of Object.entries(before)) expect(readFileSync(f)).toEqual(bytes)
    const run = await cairn(['run', '--data', dir])
    expect(run.code).toBe(1)
    expect(run.stderr).toBe(`cairn run: ${missing}; if a cairn init on ${dir} failed before it wrote identity.key and no node ever ran on it, run that cairn init again\n`)
    const doctor = await cairn(['doctor', '--data', dir])
    expect(doctor.code).toBe(1)
    expect(doctor.stdout).toContain(`FAIL  data directory   ${missing}`)

    // An init that stopped before identity.key (its last file) on a directory nothing ran on: run again, it completes.
    const cut = join(tmp.path, 'cut')
    await initDataDir(cut, { newNetwork: true })
    rmSync(dataPaths(cut).identity)
    expect((await initDataDir(cut, { newNetwork: true })).created).toBe(true)
  })

  test('a start refuses a cairn.db that records its own tree without its blocks.db; a directory that never published starts with a new one', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'node')
    const p = dataPaths(dir)
    await initDataDir(dir, { newNetwork: true })
    const node = await inProcessNode(dir)
    const token = readFileSync(p.apiToken, 'utf8').trim()
    const res = await fetch(`http://127.0.0.1:${node.http!.port}/v1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'test.published', payload: {} })
    })
    expect(res.status).toBe(201)
    await node.stop()
    const blocks = join(tmp.path, 'blocks.db')
    copyFileSync(p.blocks, blocks)
    for (const f of ['', '-wal', '-shm']) rmSync(`${p.blocks}${f}`, { force: true })
    await expect(inProcessNode(dir)).rejects.toThrow(
      `${p.blocks} is missing: it holds the files this node published, which no other place has while they are unpruned, and the trees it synced; a node started without it would announce a tree whose blocks are gone. Restore blocks.db and cairn.db from the same backup (docs/operations.md, "Backups"), or start over as a new node in another directory (cairn init --data NEWDIR --join FILE; an owner adds its new peer id)`
    )
    copyFileSync(blocks, p.blocks)
    await (await inProcessNode(dir)).stop()

    // A node that started and stopped without publishing or syncing: its empty tree is made again.
    const fresh = join(tmp.path, 'fresh')
    await initDataDir(fresh, { newNetwork: true })
    rmSync(dataPaths(fresh).blocks)
    await (await inProcessNode(fresh)).stop()
    for (const f of ['', '-wal', '-shm']) rmSync(`${dataPaths(fresh).blocks}${f}`, { force: true })
    const doctor = await cairn(['doctor', '--json', '--data', fresh])
    expect(JSON.parse(doctor.stdout).checks.find((c: { check: string }) => c.check === 'blocks.db')).toEqual({
      check: 'blocks.db',
      ok: true,
      detail: 'missing: this node published nothing and synced no tree, and its next start makes a new one'
    })
    await (await inProcessNode(fresh)).stop()
  })

  test('cairn init completes an init cut short while it made cairn.db (a cairn.db without its tables)', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'node')
    await initDataDir(dir, { newNetwork: true })
    const p = dataPaths(dir)
    for (const f of ['identity.key', 'cairn.db', 'cairn.db-wal', 'cairn.db-shm', 'blocks.db', 'blocks.db-wal', 'blocks.db-shm']) rmSync(join(dir, f), { force: true })
    writeFileSync(p.database, '')
    expect((await initDataDir(dir, { newNetwork: true })).created).toBe(true)
    expect(existsSync(p.identity)).toBe(true)
  })

  test.skipIf(process.getuid?.() !== 0)('a directory another user owns: run, doctor and status say permission denied, naming the path, the user and the fix', async () => {
    using tmp = tempDir()
    chmodSync(tmp.path, 0o755)
    const dir = join(tmp.path, 'node')
    const p = dataPaths(dir)
    await initDataDir(dir, { newNetwork: true })
    const bin = join(tmp.path, 'cairn')
    copyFileSync(join(import.meta.dir, '..', 'dist', 'cairn'), bin)
    chmodSync(bin, 0o755)
    const asNobody = async (args: string[]) => {
      const proc = Bun.spawn(['runuser', '-u', 'nobody', '--', bin, ...args], { cwd: tmp.path, env: { PATH: process.env.PATH ?? '' }, stdout: 'pipe', stderr: 'pipe' })
      const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
      return { code, stdout, stderr }
    }
    const fix = `this user (nobody, uid 65534) may not read it; ${dir} belongs to root, mode 0700; give it access (chown -R nobody ${dir}, then chmod 700 ${dir} and 600 its files), or run as the user that owns the data directory (root), then run this again (the file is not damaged: there is nothing to restore)`
    const denied = `Cannot read ${p.identity}: permission denied (EACCES: permission denied, stat '${p.identity}'): ${fix}`
    for (const verb of ['run', 'status', 'events']) expect(await asNobody([verb, '--data', dir])).toEqual({ code: 1, stdout: '', stderr: `cairn ${verb}: ${denied}\n` })
    expect((await asNobody(['doctor', '--data', dir])).stdout).toContain(`FAIL  data directory   ${denied}`)

    // The directory open to others, identity.key not: the key is fine, only this user may not read it.
    chmodSync(dir, 0o755)
    const doctor = await asNobody(['doctor', '--data', dir])
    expect(doctor.stdout).toContain(`FAIL  identity.key     Cannot read ${p.identity}: permission denied (EACCES: permission denied, open '${p.identity}'): ${fix.replace('mode 0700', 'mode 0755')}`)
    expect(doctor.stdout).not.toContain('restore identity.key')
  })
})

test.skipIf(process.getuid?.() !== 0)('a directory above the data directory that the user may not enter is named as what to fix', async () => {
  using tmp = tempDir()
  chmodSync(tmp.path, 0o755)
  const priv = join(tmp.path, 'priv')
  mkdirSync(priv, { mode: 0o700 })
  const dir = join(priv, 'node')
  await initDataDir(dir, { newNetwork: true })
  Bun.spawnSync(['chown', '-R', 'nobody', dir])
  const bin = join(tmp.path, 'cairn')
  copyFileSync(join(import.meta.dir, '..', 'dist', 'cairn'), bin)
  chmodSync(bin, 0o755)
  const proc = Bun.spawn(['runuser', '-u', 'nobody', '--', bin, 'status', '--data', dir], { cwd: tmp.path, env: { PATH: process.env.PATH ?? '' }, stdout: 'pipe', stderr: 'pipe' })
  const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited])
  expect(code).toBe(1)
  expect(stderr).toContain(`this user (nobody, uid 65534) may not enter ${priv}, which belongs to root, mode 0700, above the data directory; let it in (chmod o+x ${priv}`)
})
