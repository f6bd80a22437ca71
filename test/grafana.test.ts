import { describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Metrics } from '../src/metrics/metrics.ts'
import { ROOT } from './helpers/process.ts'

interface Panel {
  title: string
  targets?: Array<{ expr: string }>
}

/** @returns the series names the node's /metrics serves: each family, and a histogram's _bucket, _sum and _count */
async function exported(): Promise<Set<string>> {
  const names = new Set<string>()
  for (const m of /^# TYPE (\S+) (\S+)$/gm[Symbol.matchAll](await new Metrics().text())) {
    names.add(m[1])
    if (m[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(`${m[1]}${s}`)
  }
  return names
}

describe('docs/grafana-dashboard.json', () => {
  const dashboard = JSON.parse(readFileSync(join(ROOT, 'docs', 'grafana-dashboard.json'), 'utf8')) as { panels: Panel[]; templating: { list: Array<{ definition: string }> } }
  const queries = [
    ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: p.title, expr: t.expr }))),
    ...dashboard.templating.list.map((v) => ({ where: 'variable', expr: v.definition }))
  ]

  test('every query names only metrics the node exports, and names at least one', async () => {
    const names = await exported()
    const unknown = queries.flatMap(({ where, expr }) => {
      const used = expr.match(/\bcairn_[a-z0-9_]+/g) ?? []
      return used.length === 0 ? [`${where}: ${expr} names no cairn_ metric`] : used.filter((u) => !names.has(u)).map((u) => `${where}: ${u}`)
    })
    expect(unknown).toEqual([])
  })

  test('covers lag per producer, events in and out, rejections by reason, dead letters, gaps and housekeeping', () => {
    const all = queries.map((q) => q.expr).join('\n')
    for (const m of [
      'cairn_producer_lag_events',
      'cairn_events_published_total',
      'cairn_events_ingested_total',
      'cairn_events_applied_total',
      'cairn_rejected_total',
      'cairn_dead_letters',
      'cairn_gaps',
      'cairn_reclaimed_bytes_total',
      'cairn_outbox_files'
    ]) {
      expect(all).toContain(m)
    }
  })
})
