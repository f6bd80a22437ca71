import { describe, expect, test } from 'bun:test'
import { Database } from 'bun:sqlite'
import { copyFileSync, mkdirSync, renameSync, rmSync, symlinkSync } from 'node:fs'
import { join } from 'node:path'
import parsePrometheusTextFormat from 'parse-prometheus-text-format'
import { cairn, cairnCommand, cairnInMountNamespace, NodeProcess, readOnlyMount, tempDir, waitFor } from './helpers/process.ts'
import { eventCount } from './helpers/db.ts'
import { MIGRATIONS } from '../src/store/migrations.ts'

/** Reads SSE events from a stream until `count` data events arrived, then disconnects. */
async function readStream(url: string, token: string, count: number, lastEventId?: string): Promise<Array<{ id: string; data: any }>> {
  const ctrl = new AbortController()
  const headers: Record<string, string> = { authorization: `Bearer ${token}` }
  if (lastEventId != null) headers['last-event-id'] = lastEventId
  const res = await fetch(url, { headers, signal: ctrl.signal })
  expect(res.status).toBe(200)
  const reader = res.body!.getReader()
  const dec = new TextDecoder()
  let buf = ''
  const out: Array<{ id: string; data: any }> = []
  const deadline = setTimeout(() => {
    ctrl.abort()
  }, 30_000)
  try {
    while (out.length < count) {
      const { value, done } = await reader.read()
      if (done) break
      buf += dec.decode(value)
      for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
        const block = buf.slice(0, i)
        buf = buf.slice(i + 2)
        const fields = Object.fromEntries(block.split('\n').map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]))
        if (fields.event == null && fields.data != null) out.push({ id: fields.id, data: JSON.parse(fields.data) })
      }
    }
  } finally {
    clearTimeout(deadline)
    ctrl.abort()
  }
  return out
}

describe('operator and backend experience', () => {
  test('/metrics parses as Prometheus text and has the cairn_ series', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using b = await NodeProcess.init(tmp.path, 'b', { network: a })
    await a.start()
    await b.start(['--bootstrap', a.addrs[0]])
    await a.publish({ type: 'test.metric', payload: {} })
    await waitFor('the event on b', () => eventCount(b.dir) === 1, 30_000)
    const text = await (await fetch(`http://${b.http}/metrics`)).text()
    const families = parsePrometheusTextFormat(text) as Array<{ name: string; type: string }>
    const names = new Set(families.map((f) => f.name))
    for (const name of [
      'cairn_events_published_total',
      'cairn_events_ingested_total',
      'cairn_events_applied_total',
      'cairn_propagation_seconds',
      'cairn_apply_duration_seconds',
      'cairn_producer_lag_events',
      'cairn_producer_lag_seconds',
      'cairn_lag_alert',
      'cairn_peers',
      'cairn_heads_received_total',
      'cairn_heads_announced_total',
      'cairn_rejected_total',
      'cairn_dead_letters',
      'cairn_gaps',
      'cairn_outbox_files',
      'cairn_reclaimed_bytes_total'
    ]) {
      expect(names.has(name)).toBe(true)
    }
    expect(families.find((f) => f.name === 'cairn_propagation_seconds')?.type).toBe('HISTOGRAM')
    // gossipsub keeps its messages (a's hint, its peer records) in cairn's cache, bounded by bytes.
    await waitFor("messages in a's gossip cache", async () => Number(/^cairn_gossip_cache_bytes (\S+)$/m.exec(await (await fetch(`http://${a.http}/metrics`)).text())?.[1] ?? 0) > 0)
  })

  test('the SSE stream resumes with Last-Event-ID: exactly the missed events arrive, once', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await a.start()
    for (let i = 0; i < 3; i++) await a.publish({ type: 'test.stream', payload: { i } })
    const url = `http://${a.http}/v1/stream`
    const first = await readStream(url, a.token, 3)
    expect(first.map((e) => e.data.payload.i)).toEqual([0, 1, 2])
    // disconnected: publish more, of two types
    for (let i = 3; i < 6; i++) await a.publish({ type: 'test.stream', payload: { i } })
    await a.publish({ type: 'test.other', payload: { i: 99 } })
    const resumed = await readStream(url, a.token, 4, first.at(-1)!.id)
    expect(resumed.map((e) => e.data.payload.i)).toEqual([3, 4, 5, 99])
    expect(new Set([...first, ...resumed].map((e) => e.data.event_id)).size).toBe(7)
    const filtered = await readStream(`${url}?types=test.other`, a.token, 1)
    expect(filtered.map((e) => e.data.type)).toEqual(['test.other'])
    const unauthorised = await fetch(url)
    expect(unauthorised.status).toBe(401)
  })

  test('cairn events --follow prints the events there are, then new ones as they arrive', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await a.start()
    await a.publish({ type: 'test.follow', payload: { n: 1 } })
    const proc = Bun.spawn(cairnCommand('binary', ['events', '--data', a.dir, '--json', '--follow']), { stdout: 'pipe', stderr: 'pipe' })
    try {
      const reader = proc.stdout.getReader()
      const dec = new TextDecoder()
      let text = ''
      const lines = async (n: number): Promise<any[]> => {
        while (text.split('\n').filter((l) => l !== '').length < n) {
          const { value, done } = await reader.read()
          if (done) break
          text += dec.decode(value)
        }
        return text
          .split('\n')
          .filter((l) => l !== '')
          .map((l) => JSON.parse(l))
      }
      expect((await lines(1)).map((e) => e.payload.n)).toEqual([1])
      await a.publish({ type: 'test.follow', payload: { n: 2 } })
      expect((await lines(2)).map((e) => e.payload.n)).toEqual([1, 2])
    } finally {
      proc.kill('SIGINT')
      expect(await proc.exited).toBe(0)
    }
  })

  test("status reads degraded when a producer's lag passes --lag-alert, and the metric shows it", async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    const other = await NodeProcess.init(tmp.path, 'other')
    // A head from a producer whose tree nobody can serve: the lag can only grow.
    const db = new Database(join(a.dir, 'cairn.db'))
    db.run(
      `INSERT INTO producers (producer, head_seq, head_root, head_hlc, head_received_at, processed_seq) VALUES (?, 5, 'bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi', '0000000000001-0000', ?, 0)`,
      [other.peerId, Date.now() - 5000]
    )
    db.close()
    await a.start(['--lag-alert', '1s'])
    const status = await a.status()
    expect(status.verdict).toBe('degraded')
    expect(status.reasons.join(' ')).toContain('lag over 1000 ms')
    const metrics = await (await fetch(`http://${a.http}/metrics`)).text()
    expect(metrics).toContain('cairn_lag_alert 1')
    const text = await cairn(['status', '--data', a.dir])
    expect(text.stdout).toContain('verdict   degraded')
    expect(text.stdout).toContain(other.peerId)
    await a.stop()
    await a.start(['--lag-alert', '1h'])
    expect((await a.status()).verdict).toBe('healthy')
  })

  test('a full disk or a read-only file system is said to be one, never to restore the databases from a backup; doctor only reads', async () => {
    using tmp = tempDir()
    const dir = join(tmp.path, 'n')
    expect((await cairn(['init', '--data', dir, '--new-network'])).code).toBe(0)
    const restore = /restore it from a backup|restore it and cairn.db from the same backup|move it away to start|unexpected error/
    // A restart on a full disk: a 1 MiB tmpfs holding a copy of the directory, filled but for 8 KiB (run.lock fits, SQLite's files do not).
    const mnt = join(tmp.path, 'mnt')
    const full = `mkdir -p '${mnt}' && mount -t tmpfs -o size=1m tmpfs '${mnt}' && cp -a '${dir}' '${mnt}/n' && dd if=/dev/zero of='${mnt}/spare' bs=4k count=2 && { dd if=/dev/zero of='${mnt}/fill' bs=4k || true; } && rm '${mnt}/spare'`
    const run = await cairnInMountNamespace(full, ['run', '--data', join(mnt, 'n'), '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'])
    if (run == null) return console.log("skipped: needs root and util-linux's unshare -m")
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(
      /^cairn run: Cannot open \S+\/n\/(cairn|blocks)\.db: .*; the disk is full: free space on the file system of .*\(the file is not damaged: there is nothing to restore\)\n$/
    )
    expect(run.stderr).not.toMatch(restore)
    // doctor says so too: the databases cannot be opened there (SQLite writes beside them even to read), for the
    // same reason, and nothing says to restore them.
    const fullDoctor = (await cairnInMountNamespace(full, ['doctor', '--data', join(mnt, 'n'), '--json']))!
    const fullChecks = (JSON.parse(fullDoctor.stdout) as { checks: Array<{ check: string; ok: boolean; detail: string; fix?: string }> }).checks
    expect({ code: fullDoctor.code, failed: fullChecks.filter((c) => !c.ok).map((c) => c.check) }).toEqual({ code: 1, failed: ['disk space', 'cairn.db', 'blocks.db'] })
    for (const c of fullChecks.filter((c) => c.check.endsWith('.db'))) expect(c.fix).toStartWith('the disk is full: free space on the file system of ')
    expect(fullChecks.find((c) => c.check === 'disk space')).toMatchObject({
      detail: expect.stringMatching(/^the disk is full: \d+ of \d+ bytes free on the file system of \S+\/n; a node's commits fail/),
      fix: 'free space on that file system, or move the data directory to a larger one; the files are not damaged by this'
    })
    // A read-only file system.
    const ro = readOnlyMount(tmp.path)
    const doctor = (await cairnInMountNamespace(ro, ['doctor', '--data', dir, '--json']))!
    expect(doctor.code).toBe(1)
    const checks = (JSON.parse(doctor.stdout) as { checks: Array<{ check: string; ok: boolean; detail: string; fix?: string }> }).checks
    expect(checks.filter((c) => !c.ok).map((c) => c.check)).toEqual(['writable'])
    expect(checks.find((c) => c.check === 'writable')?.detail).toBe(
      `${dir} cannot be written (EROFS: read-only file system, access '${dir}'): a node cannot run on it, and the commands that write refuse`
    )
    // The verbs that only read, read a stopped node's database read-only, as sql does; one that writes says why it cannot.
    const reads: Record<string, string[]> = { status: ['--json'], events: ['--json'], gaps: [], dead: [], export: ['--car', '/dev/null'] }
    const printed: Record<string, string> = {}
    for (const [verb, args] of Object.entries(reads)) {
      const r = (await cairnInMountNamespace(ro, [verb, '--data', dir, ...args]))!
      expect({ verb, code: r.code, stderr: r.stderr }).toEqual({ verb, code: 0, stderr: '' })
      printed[verb] = r.stdout
    }
    expect(JSON.parse(printed.status)).toMatchObject({ running: false, events: 0, gaps: [] })
    expect([printed.events, printed.gaps, printed.dead]).toEqual(['', 'no gaps\n', 'no dead letters\n'])
    const replay = (await cairnInMountNamespace(ro, ['replay', '--data', dir, '--dead']))!
    expect(replay.code).toBe(1)
    expect(replay.stderr).toStartWith(`cairn replay: Cannot open ${join(dir, 'cairn.db')}: unable to open database file; ${join(dir, 'cairn.db')} cannot be written (EROFS: read-only file system`)
    expect(replay.stderr).toEndWith('(the file is not damaged: there is nothing to restore)\n')
    const sql = (await cairnInMountNamespace(ro, ['sql', '--data', dir, 'SELECT count(*) AS n FROM events']))!
    expect({ code: sql.code, stdout: sql.stdout, stderr: sql.stderr }).toEqual({ code: 0, stdout: 'n\n0\n', stderr: '' })
    // A schema older than this cairn's cannot be migrated there: said in one line, not read on the old tables.
    const behind = join(tmp.path, 'behind')
    expect((await cairn(['init', '--data', behind, '--new-network'])).code).toBe(0)
    const old = new Database(join(behind, 'cairn.db'))
    old.exec('DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations); PRAGMA wal_checkpoint(TRUNCATE)')
    old.close()
    const older = (await cairnInMountNamespace(ro, ['events', '--data', behind]))!
    expect({ code: older.code, stdout: older.stdout }).toEqual({ code: 1, stdout: '' })
    expect(older.stderr).toStartWith(
      `cairn events: Cannot open ${join(behind, 'cairn.db')}: its schema version ${MIGRATIONS.length - 1} is older than this cairn's (${MIGRATIONS.length}), and it cannot be migrated where it cannot be written; ${join(behind, 'cairn.db')} cannot be written (EROFS: read-only file system`
    )

    // cairn.db a symbolic link to another disk, left with a -wal file (beside its target) and no -shm: on a
    // read-only file system it cannot be read whole, and is not read without its -wal either.
    const linked = join(tmp.path, 'linked')
    const disk2 = join(tmp.path, 'disk2')
    expect((await cairn(['init', '--data', linked, '--new-network'])).code).toBe(0)
    mkdirSync(disk2)
    renameSync(join(linked, 'cairn.db'), join(disk2, 'cairn.db'))
    symlinkSync(join(disk2, 'cairn.db'), join(linked, 'cairn.db'))
    const writer = new Database(join(disk2, 'cairn.db'))
    writer.exec("PRAGMA wal_autocheckpoint = 0; INSERT INTO meta (key, value) VALUES ('only_in_the_wal', 'x')")
    copyFileSync(join(disk2, 'cairn.db'), join(tmp.path, 'main-file'))
    copyFileSync(join(disk2, 'cairn.db-wal'), join(tmp.path, 'wal-file'))
    writer.close()
    copyFileSync(join(tmp.path, 'main-file'), join(disk2, 'cairn.db'))
    copyFileSync(join(tmp.path, 'wal-file'), join(disk2, 'cairn.db-wal'))
    rmSync(join(disk2, 'cairn.db-shm'), { force: true })
    const stale = (await cairnInMountNamespace(ro, ['sql', '--data', linked, "SELECT count(*) AS n FROM meta WHERE key = 'only_in_the_wal'"]))!
    expect({ code: stale.code, stdout: stale.stdout }).toEqual({ code: 1, stdout: '' })
    expect(stale.stderr).toStartWith(`cairn sql: Cannot open ${join(linked, 'cairn.db')}: unable to open database file; `)
    expect(stale.stderr).not.toMatch(restore)

    // A read-only file system with no space left (an image) is said to be read-only, not full.
    const roFull = `mkdir -p '${mnt}' && mount -t tmpfs -o size=1m tmpfs '${mnt}' && cp -a '${linked}' '${mnt}/n' && rm '${mnt}/n/cairn.db' && cp '${join(disk2, 'cairn.db')}' '${join(disk2, 'cairn.db-wal')}' '${mnt}/n/' && { dd if=/dev/zero of='${mnt}/fill' bs=4k || true; } && mount -o remount,ro '${mnt}'`
    const image = (await cairnInMountNamespace(roFull, ['sql', '--data', join(mnt, 'n'), 'SELECT 1 AS one']))!
    expect(image.code).toBe(1)
    expect(image.stderr).toContain('cannot be written (EROFS')
    expect(image.stderr).not.toContain('the disk is full')

    // A schema from a newer cairn on a nearly full disk is still a newer cairn's, not a full disk.
    const newer = `mkdir -p '${mnt}' && mount -t tmpfs -o size=1m tmpfs '${mnt}' && cp -a '${dir}' '${mnt}/n' && dd if=/dev/zero of='${mnt}/spare' bs=4k count=16 && { dd if=/dev/zero of='${mnt}/fill' bs=4k || true; } && rm '${mnt}/spare'`
    const db = new Database(join(dir, 'cairn.db'))
    db.exec('INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)')
    db.close()
    const ahead = (await cairnInMountNamespace(newer, ['run', '--data', join(mnt, 'n'), '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0']))!
    expect(ahead.code).toBe(1)
    expect(ahead.stderr).toBe(`cairn run: Cannot open ${join(mnt, 'n', 'cairn.db')}: its schema version 99 is newer than this cairn knows (${MIGRATIONS.length}); run a newer cairn\n`)
  })
})
