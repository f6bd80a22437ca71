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
import { CairnNode } from './nodes.ts'

const N = Number(process.env.N ?? 100)
const WARM = 20

interface Mark { stage: string, seq: number | undefined, at: number }

/** @returns the TRACE lines of a node's stderr */
function marks (stderr: string): Mark[] {
  return stderr.split('\n').filter((l) => l.startsWith('TRACE ')).map((l) => {
    const [, stage, seq, at] = l.split(' ')
    return { stage, seq: seq === '' ? undefined : Number(seq), at: Number(at) }
  })
}

const now = (): number => performance.timeOrigin + performance.now()
const dir = mkdtempSync(join(tmpdir(), 'cairn-bench-trace-'))
const nodes: CairnNode[] = []
try {
  const a = await CairnNode.create(join(dir, 'a'))
  nodes.push(a)
  if (process.env.BIN != null) a.command = [process.env.BIN]
  a.env = { CAIRN_TRACE: '1' }
  await a.start([])
  const b = await CairnNode.create(join(dir, 'b'), a.swarmKey)
  nodes.push(b)
  b.command = a.command
  b.env = a.env
  await b.start([a.addrs[0]])
  for (let i = 0; i < WARM; i++) { await a.publish(`warm${i}`); await Bun.sleep(50) }
  while (b.applied.size < WARM) await Bun.sleep(10)
  const sent: number[] = []
  const seen = new Map<string, number>()
  b.onApplied = (id) => { seen.set(id, now()) }
  for (let i = 0; i < N; i++) {
    sent.push(now())
    void a.publish(`e${i}`)
    await Bun.sleep(50)
  }
  while (seen.size < N) await Bun.sleep(10)
  for (const n of nodes) await n.stop()
  // stderr is collected when each process's pipe closes
  await Bun.sleep(200)

  const onA = marks(a.stderr)
  const onB = marks(b.stderr)
  /** the first mark of `stage` for `seq` (or with no seq, the first at or after `after`) */
  const find = (list: Mark[], stage: string, seq: number, after: number | undefined): number | undefined =>
    list.find((m) => m.stage === stage && (m.seq === seq || (m.seq == null && after != null && m.at >= after)))?.at
  const stages: Array<[string, Mark[]]> = [
    ['publish.received', onA], ['commit.started', onA], ['commit.blocks_durable', onA], ['commit.head_durable', onA],
    ['commit.announced', onA], ['hint.validating', onB], ['hint.verified', onB], ['head.accepted', onB],
    ['events.ingested', onB], ['plugins.round', onB], ['plugins.round_done', onB], ['stream.sent', onB]
  ]
  const gaps = new Map<string, number[]>()
  for (let i = 0; i < N; i++) {
    const seq = WARM + 1 + i
    let prev = { name: 'request sent', at: sent[i] as number | undefined }
    for (const [stage, list] of [...stages, ['read from the stream', []] as [string, Mark[]]]) {
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
