import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { cairn, EXAMPLES, NodeProcess, tempDir, waitFor } from './helpers/process.ts'
import { query } from './helpers/db.ts'
import { signSnapshot, verifySnapshot, type Snapshot } from '../src/model/snapshot.ts'

const PLUGINS = join(EXAMPLES, 'snapshot')
const opts = ['--plugins', PLUGINS, '--retention', '2s', '--housekeeping-interval', '1s', '--retention-max', '1h']

const invite = (workspace: string, invitee: string) => ({ type: 'workspace.invited', payload: { workspace_id: workspace, invitee, role: 'viewer', invited_by: 'root@example.com' } })

/** The example counter plugin's table as text. */
const counts = (dir: string): string => {
  try {
    return JSON.stringify(query(dir, 'SELECT workspace_id, n FROM workspace_invitations ORDER BY workspace_id'))
  } catch {
    return '[]'
  }
}

const processedUpTo = async (node: NodeProcess, producer: string, seq: number): Promise<boolean> => {
  const s = await node.status()
  return s.producers.some((p: any) => p.producer === producer && p.processed_seq === seq) && s.plugins.backlog === 0
}

describe('signed snapshots', () => {
  test('a counter that no key describes reaches the same state on a late joiner through a trusted snapshot, exactly once across a SIGKILL; an untrusted one is ignored', async () => {
    using tmp = tempDir()
    await using a = await NodeProcess.init(tmp.path, 'a')
    await using c = await NodeProcess.init(tmp.path, 'c', { network: a })
    await using d = await NodeProcess.init(tmp.path, 'd', { network: a })
    await a.start(opts)
    // ann is invited to w1 four times, bob to w2 three times: the counter says 4 and 3; the built-in plugin
    // keeps only the newest invitation of each, so the five others are pruned after the retention.
    for (let i = 0; i < 4; i++) await a.publish(invite('w1', 'ann@example.com'))
    for (let i = 0; i < 3; i++) await a.publish(invite('w2', 'bob@example.com'))
    await waitFor('a to prune its superseded invitations', async () => (await a.status()).outbox.files === 2, 60_000)
    const written = JSON.parse((await cairn(['snapshot', '--data', a.dir, '--plugin', 'workspace-counter'])).stdout)
    expect(written).toMatchObject([{ plugin: 'workspace-counter', vector: { [a.peerId]: 7 } }])
    // Not a plugin, or an opted-out one: a clear refusal.
    const bad = await cairn(['snapshot', '--data', a.dir, '--plugin', 'nope'])
    expect(bad.code).not.toBe(0)
    expect(bad.stderr).toContain('Cannot snapshot plugin nope: no such plugin is loaded')
    // Two more after the snapshot: the newcomer applies these on top of it.
    await a.publish(invite('w1', 'cy@example.com'))
    await a.publish(invite('w2', 'dan@example.com'))
    await waitFor(
      'a to count 9 invitations',
      () =>
        counts(a.dir) ===
        JSON.stringify([
          { workspace_id: 'w1', n: 5 },
          { workspace_id: 'w2', n: 4 }
        ])
    )

    // c trusts a: it loads a's snapshot (seqs 4 and 7, kept and in the snapshot, are not counted twice).
    // Hard stops while it bootstraps: once the first kept events are in (before or during the load), and
    // right after the load. What was loaded, and what was applied on top of it, commit whole or not at all.
    await c.start([...opts, '--bootstrap', a.addrs[0], '--snapshot-from', a.peerId])
    await waitFor('c to store the first kept events', () => query(c.dir, 'SELECT 1 FROM events').length > 0, 60_000)
    await c.stop('SIGKILL')
    await c.start([...opts, '--bootstrap', a.addrs[0], '--snapshot-from', a.peerId])
    await waitFor('c to load the snapshot', () => query(c.dir, 'SELECT 1 FROM snapshots_loaded').length === 1, 60_000)
    await c.stop('SIGKILL')
    await c.start([...opts, '--bootstrap', a.addrs[0], '--snapshot-from', a.peerId])
    await waitFor('c to process a up to 9', () => processedUpTo(c, a.peerId, 9), 60_000)
    await waitFor('c to count as a does', () => counts(c.dir) === counts(a.dir), 30_000)
    const sc = await c.status()
    expect({ verdict: sc.verdict, reasons: sc.reasons, gaps: sc.gaps }).toEqual({ verdict: 'healthy', reasons: [], gaps: [] })
    expect(sc.plugin_state.find((p: any) => p.plugin === 'workspace-counter').state).toBe(`state from snapshot of ${a.peerId} at {"${a.peerId}":7}`)

    // d trusts nobody (the default is the members list, and there is none): a's snapshot is ignored, and
    // its counter starts at the retention horizon, as status says.
    // It also writes snapshots every second: of the built-in plugin (whole, by compaction), not of the counter.
    await d.start([...opts, '--bootstrap', a.addrs[0], '--snapshot-interval', '1s'])
    await waitFor('d to process a up to 9', () => processedUpTo(d, a.peerId, 9), 60_000)
    expect(counts(d.dir)).toBe(
      JSON.stringify([
        { workspace_id: 'w1', n: 2 },
        { workspace_id: 'w2', n: 2 }
      ])
    )
    expect(query(d.dir, 'SELECT * FROM snapshots_loaded')).toEqual([])
    const sd = await d.status()
    expect(sd.verdict).toBe('healthy')
    expect(sd.plugin_state.find((p: any) => p.plugin === 'workspace-counter').state).toContain('state from the retention horizon')
    expect(sd.plugin_state.find((p: any) => p.plugin === 'workspace-counter').state).toContain('no producer is trusted for snapshots')
    await waitFor('d to write a scheduled snapshot', () => query(d.dir, 'SELECT plugin FROM snapshots_out').length > 0, 30_000)
    expect(query(d.dir, 'SELECT plugin FROM snapshots_out')).toEqual([{ plugin: 'workspace-access' }])
    await waitFor('d to log why the counter has none', () => d.logs.includes('snapshot not written: Cannot snapshot plugin workspace-counter: its state here misses'), 30_000)
  }, 240_000)

  test('a forged or tampered snapshot is refused with the reason', async () => {
    const key = await generateKeyPair('Ed25519')
    const other = await generateKeyPair('Ed25519')
    const producer = peerIdFromPrivateKey(key).toString()
    const snapshot: Snapshot = {
      format: 'cairn.snapshot/1',
      plugin: 'workspace-counter',
      producer,
      created_at: new Date().toISOString(),
      vector: { [producer]: 7 },
      tables: { workspace_invitations: { columns: ['workspace_id', 'n'], rows: [['w1', 4]] } }
    }
    const good = await signSnapshot(snapshot, key)
    expect(await verifySnapshot(good, producer, 'workspace-counter')).toEqual(snapshot)
    const refusal = async (bytes: Uint8Array, plugin = 'workspace-counter'): Promise<string> => {
      try {
        await verifySnapshot(bytes, producer, plugin)
        return 'accepted'
      } catch (err) {
        return `${(err as { reason: string }).reason}: ${(err as Error).message}`
      }
    }
    // signed by another key, claiming to be the producer's
    expect(await refusal(await signSnapshot(snapshot, other))).toBe(
      `bad_signature: Cannot use the snapshot of workspace-counter from ${producer}: the signature does not verify with the producer's key (forged or tampered)`
    )
    // a count changed after signing
    const tampered = new TextEncoder().encode(new TextDecoder().decode(good).replace('["w1",4]', '["w1",40]'))
    expect(await refusal(tampered)).toStartWith('bad_signature:')
    expect(await refusal(good, 'workspace-access')).toBe(`wrong_plugin: Cannot use the snapshot of workspace-access from ${producer}: it is a snapshot of workspace-counter`)
    expect(await refusal(new TextEncoder().encode('{"snapshot":1}'))).toStartWith('malformed_snapshot:')
  })
})
