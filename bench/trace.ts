/**
 * Where the latency at 20 events/s goes, stage by stage: two nodes of the built binary with
 * `CAIRN_TRACE=1` (see src/log/trace.ts), N events published on A one at a time, 50 ms apart, and the
 * median time between consecutive stages from the driver's request to the event on B's live stream.
 *
 *   bun bench/trace.ts                  # N=100
 *   BIN=/tmp/cairn-other bun bench/trace.ts
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { epochNow, startCairnChain, traceMarks, type CairnNode, type TraceMark } from './nodes.ts'

const N = Number(process.env.N ?? 100)
const WARM = 20

const dir = mkdtempSync(join(tmpdir(), 'cairn-bench-trace-'))
let nodes: CairnNode[] = []
try {
  nodes = await startCairnChain(dir, 2, { command: process.env.BIN != null ? [process.env.BIN] : undefined, env: { CAIRN_TRACE: '1' } })
  const [a, b] = nodes
  for (let i = 0; i < WARM; i++) {
    await a.publish(`warm${i}`)
    await Bun.sleep(50)
  }
  while (b.applied.size < WARM) await Bun.sleep(10)
  const sent: number[] = []
  const seen = new Map<string, number>()
  b.onApplied = (id) => {
    seen.set(id, epochNow())
  }
  for (let i = 0; i < N; i++) {
    sent.push(epochNow())
    void a.publish(`e${i}`)
    await Bun.sleep(50)
  }
  while (seen.size < N) await Bun.sleep(10)
  // stop() returns once a node's stderr, with its marks, is read whole
  for (const n of nodes) await n.stop()

  const onA = traceMarks(a.stderr)
  const onB = traceMarks(b.stderr)
  /** the first mark of `stage` (or of one of `a|b`) for `seq` (or with no seq, the first at or after `after`) */
  const find = (list: TraceMark[], stage: string, seq: number, after: number | undefined): number | undefined =>
    list.find((m) => stage.split('|').includes(m.stage) && (m.seq === seq || (m.seq == null && after != null && m.at >= after)))?.at
  const stages: Array<[string, TraceMark[]]> = [
    ['publish.received', onA],
    ['commit.started', onA],
    // commit.blocks_durable in builds that synced blocks.db on every commit
    ['commit.blocks_written|commit.blocks_durable', onA],
    ['commit.head_durable', onA],
    ['commit.announced', onA],
    ['hint.validating', onB],
    ['hint.verified', onB],
    ['head.accepted', onB],
    ['walk.started', onB],
    ['walk.listed', onB],
    ['events.ingested', onB],
    ['plugins.round', onB],
    ['plugins.round_done', onB],
    ['stream.sent', onB]
  ]
  const gaps = new Map<string, number[]>()
  for (let i = 0; i < N; i++) {
    const seq = WARM + 1 + i
    let prev = { name: 'request sent', at: sent[i] as number | undefined }
    for (const [stage, list] of [...stages, ['read from the stream', []] as [string, TraceMark[]]]) {
      const at = stage === 'read from the stream' ? seen.get(`e${i}`) : find(list, stage, seq, prev.at)
      if (at != null && prev.at != null) {
        const key = `${prev.name} → ${stage}`
        gaps.set(key, [...(gaps.get(key) ?? []), at - prev.at])
      }
      prev = { name: stage, at }
    }
    gaps.set('total', [...(gaps.get('total') ?? []), seen.get(`e${i}`)! - sent[i]])
  }
  const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]
  console.log(`${N} events at 20/s, A → B, median per stage (ms):`)
  for (const [key, xs] of gaps) console.log(`${median(xs).toFixed(2).padStart(7)}  ${key}${xs.length < N ? ` (${xs.length} of ${N} matched)` : ''}`)
} finally {
  for (const n of nodes) await n.stop()
  rmSync(dir, { recursive: true, force: true })
}
