import { describe, expect, test } from 'bun:test'
import { membersPage, pluginsPage, producersPage, storagePage, type PluginsView } from '../../src/http/console/pages.ts'
import type { StatusDocument } from '../../src/node/status.ts'

const SELF = '12D3KooWSe1f111111111111111111111111111111111111111'
const LATE = '12D3KooWLate11111111111111111111111111111111111111'

describe('console pages show what status and the members list say', () => {
  test("the Producers page shows where another producer's history starts here and how much compaction removed", () => {
    const s = {
      peer_id: SELF,
      producers: [{ producer: LATE, head_seq: 40, processed_seq: 40, lag_events: 0, lag_ms: 0, last_error: null }],
      gaps: [],
      history: [{ producer: LATE, history_from_seq: 31, compacted_seqs: 4 }],
      outbox: { oldest_seq: null }
    } as unknown as StatusDocument
    const page = String(producersPage(s))
    expect(page).toContain('history from seq 31')
    expect(page).toContain('4 seqs compacted')
  })

  test('the Producers page shows the seq stored and the seq applied, as status names them', () => {
    const s = {
      peer_id: SELF,
      producers: [{ producer: LATE, head_seq: 40, processed_seq: 37, applied_seq: 12, lag_events: 3, lag_ms: 0, last_error: null }],
      gaps: [],
      history: [],
      outbox: { oldest_seq: null }
    } as unknown as StatusDocument
    const page = String(producersPage(s))
    expect(page).toContain('<th scope="col" class="num">Stored</th><th scope="col" class="num">Applied</th>')
    expect(page).toContain('<td class="num">40</td><td class="num">37</td><td class="num">12</td><td class="num">3</td>')
    expect(page).not.toContain('Processed')
  })

  test("the Producers page lists a producer's first lost gaps and counts the rest", () => {
    const gaps = Array.from({ length: 20 }, (_, i) => ({ producer: LATE, from_seq: 2 + 2 * i, to_seq: 2 + 2 * i, detected_at: '', kind: 'lost' }))
    const s = {
      peer_id: SELF,
      producers: [
        { producer: LATE, head_seq: 10_000, processed_seq: 10_000, lag_events: 0, lag_ms: 0, last_error: null, lost_gaps: 5000 },
        { producer: SELF, head_seq: 3, processed_seq: 3, lag_events: 0, lag_ms: 0, last_error: null, lost_gaps: 0 }
      ],
      gaps,
      gaps_total: 5000,
      history: [],
      outbox: { oldest_seq: null }
    } as unknown as StatusDocument
    const page = String(producersPage(s))
    expect(page).toContain('<td>2..2, 4..4, ')
    expect(page).toContain('40..40, and 4980 more</td>')
    expect(page).toContain('<td>none</td>')
  })

  /** @returns the Plugins page of one plugin, `counter`, with `states` and its rebuild, nothing dead or held */
  const counterPage = (states: PluginsView['states'], rebuild?: 'asked' | 'running'): string =>
    String(
      pluginsPage({
        plugins: [{ name: 'counter', source: 'built-in', types: { 'test.counted': [1] }, tables: ['counted'], backlog: 0, schemas: {}, rebuild }],
        states,
        backlog: 0,
        retrying: 0,
        dead: [],
        deadTotal: 0,
        held: [],
        heldTotal: 0
      })
    )

  test("the Plugins page shows where each plugin's state comes from, and a disagreement of snapshots", () => {
    const page = counterPage([
      {
        plugin: 'counter',
        state: 'state from the retention horizon; waiting for a snapshot: snapshots disagree: b and c disagree at {}',
        disagreement: 'snapshots disagree: b and c disagree at {}'
      }
    ])
    expect(page).toContain('state from the retention horizon; waiting for a snapshot')
    expect(page).toContain('class="bad"')
    expect(page).not.toContain('Rebuild')
  })

  test('the Plugins page says when a rebuild of a plugin is asked or running', () => {
    expect(counterPage([], 'running')).toContain('Rebuild <strong>running</strong>: new tables are being built beside the current ones')
    expect(counterPage([], 'asked')).toContain('Rebuild <strong>asked</strong>')
  })

  test('the Members page lists the removed members and the seq up to which their events stay valid, as cairn members list does', () => {
    const page = String(
      membersPage({
        source: 'changes',
        self_is_owner: true,
        editable: true,
        members: [{ peer_id: SELF, name: null, role: 'owner', self: true }],
        removed: [{ peer_id: LATE, name: 'late', last_seq: 12, removed_by: SELF, removed_at: '2026-11-29T03:00:00.000Z' }]
      })
    )
    expect(page).toContain('Removed (1)')
    expect(page).toContain(`<code>${LATE}</code></th><td>late</td><td class="num">12</td>`)
  })

  test('the Members page lists the changes that took no effect, with why, as cairn members list does', () => {
    const view = {
      source: 'changes' as const,
      self_is_owner: true,
      editable: true,
      members: [{ peer_id: SELF, name: null, role: 'owner', self: true }],
      refused: [{ event_id: 'e-1', producer: LATE, seq: 3, reason: 'last_owner', detail: 'removing x would leave the network without an owner' }],
      refused_total: 4
    }
    const page = String(membersPage(view))
    expect(page).toContain('Changes that took no effect (4)')
    expect(page).toContain('the last 1 to arrive here are listed')
    expect(page).toContain(`<td><code title="${LATE}">${LATE.slice(-8)}#3</code></td><td>last_owner</td><td>removing x would leave the network without an owner</td>`)
    expect(String(membersPage({ ...view, refused: [], refused_total: 0 }))).not.toContain('Changes that took no effect')
  })

  test('the Storage page says how many files compaction took out, in all and in the last run', () => {
    const s = {
      outbox: { files: 3, oldest_seq: 4, last_seq: 9, compacted_files: 5 },
      events: 9,
      housekeeping: {
        last: { at: '2026-11-29T03:00:00.000Z', duration_ms: 3, pruned_files: 4, compacted_files: 3, held_back_by: [], blocks_deleted: 8, reclaimed_bytes: 4096, events_deleted: 0 },
        reclaimed_bytes: 4096
      },
      quarantine: { count: 0, by_reason: {} },
      gaps: []
    } as unknown as StatusDocument
    const page = String(storagePage(s, { blocks: 10, blocks_bytes: 1, database_bytes: 1 } as never))
    expect(page).toContain('5 file(s), superseded by newer events')
    expect(page).toContain('4 (3 compacted)')
  })

  test('under the static members setting, an owner sees no Remove button for a member of the setting (a change cannot remove one)', () => {
    const page = String(
      membersPage({
        source: 'setting',
        self_is_owner: true,
        editable: true,
        members: [
          { peer_id: SELF, name: null, role: 'owner', self: true },
          { peer_id: LATE, name: 'late', role: 'member' }
        ]
      })
    )
    expect(page).toContain(LATE)
    expect(page).not.toContain(`aria-label="Remove ${LATE}"`)
    expect(page).toContain('From then on the setting no longer counts')
  })
})
