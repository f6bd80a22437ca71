/**
 * The outbox alone, no HTTP and no peer: how fast group commits go, and how many block bytes they
 * write, for batches of B events (two rounds of N, the second into a bucket that already holds N).
 *
 *   bun bench/outbox.ts                 # B=100 N=20000
 *   B=1000 N=20000 bun bench/outbox.ts
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { openDatabase } from '../src/runtime/sqlite.ts'
import { migrate } from '../src/store/migrations.ts'
import { openBlockDatabase, SqliteBlockstore } from '../src/store/blockstore.ts'
import { outbox as createOutbox } from '../src/publish/outbox.ts'
import { Store } from '../src/store/store.ts'
import { silentLog } from '../src/log/logger.ts'
import { Metrics } from '../src/metrics/metrics.ts'
import { CairnEventBus } from '../src/node/events.ts'
import { HybridClock } from '../src/model/hlc.ts'
import { payload } from './nodes.ts'

const B = Number(process.env.B ?? 100)
const N = Number(process.env.N ?? 20_000)
const dir = mkdtempSync(join(tmpdir(), 'cairn-bench-outbox-'))
try {
  const key = await generateKeyPair('Ed25519')
  const db = await openDatabase(join(dir, 'node.db'))
  migrate(db)
  const blocks = new SqliteBlockstore(await openBlockDatabase(join(dir, 'blocks.db')))
  const written = { blocks: 0, bytes: 0 }
  const put = blocks.putSync.bind(blocks)
  blocks.putSync = (cid, bytes) => {
    written.blocks++
    written.bytes += bytes.length
    put(cid, bytes)
  }
  // Wall time inside each database's transactions (inserts, commit, WAL write, fsync, checkpoints).
  const inTx = { blocks: 0, node: 0, blockCommits: 0 }
  for (const [name, database] of [
    ['blocks', blocks.db],
    ['node', db]
  ] as const) {
    const transaction = database.transaction.bind(database)
    database.transaction = (fn, options) => {
      const t = performance.now()
      try {
        return transaction(fn, options)
      } finally {
        inTx[name] += performance.now() - t
        if (name === 'blocks') inTx.blockCommits++
      }
    }
  }
  const outbox = createOutbox({ privateKey: key, maxBatch: Math.max(5000, B), maxEventSize: 65536, maxDepth: 64 })({
    self: peerIdFromPrivateKey(key).toString(),
    store: new Store(db),
    blocks,
    clock: new HybridClock(),
    log: silentLog,
    metrics: new Metrics(),
    events: new CairnEventBus()
  })
  for (let round = 1; round <= 2; round++) {
    written.blocks = 0
    written.bytes = 0
    inTx.blocks = inTx.node = inTx.blockCommits = 0
    const t0 = performance.now()
    const cpu = process.cpuUsage()
    for (let i = 0; i < N; i += B) await outbox.publishMany(Array.from({ length: Math.min(B, N - i) }, (_, k) => ({ type: 'bench.event', payload: payload(`r${round}-${i + k}`) })))
    const ms = performance.now() - t0
    const used = process.cpuUsage(cpu)
    console.log(
      `round ${round} (bucket ${(round - 1) * N} → ${round * N}), batches of ${B}: ${Math.round((N / ms) * 1000)} events/s, ${Math.round((used.user + used.system) / N)} µs CPU per event, ${written.blocks} blocks / ${(written.bytes / 1e6).toFixed(1)} MB written`
    )
    console.log(`  in transactions: blocks ${Math.round(inTx.blocks)} ms (${(inTx.blocks / inTx.blockCommits).toFixed(1)} ms a commit), node ${Math.round(inTx.node)} ms, of ${Math.round(ms)} ms`)
  }
  blocks.db.close()
  db.close()
} finally {
  rmSync(dir, { recursive: true, force: true })
}
