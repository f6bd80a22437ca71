import { html } from 'hono/html'
import type { HtmlEscapedString } from 'hono/utils/html'
import { filePlace } from '../../model/layout.ts'
import { gapRangeText, type ProducerStatus, type StatusDocument } from '../../node/status.ts'
import type { PluginInfo } from '../../plugins/load.ts'
import type { PluginStateStatus } from '../../plugins/snapshots.ts'
import { rowToEnvelope, type EventRow } from '../../store/events.ts'
import type { DeadLetter, HeldEvent } from '../../store/pluginState.ts'
import type { MembersView } from './members.ts'
import { versionText } from '../../version.ts'

type Html = HtmlEscapedString | Promise<HtmlEscapedString>

/** The pages of the console, in the navigation's order. */
export const PAGES = [
  { path: '/', title: 'Overview' },
  { path: '/console/producers', title: 'Producers' },
  { path: '/console/events', title: 'Events' },
  { path: '/console/plugins', title: 'Plugins' },
  { path: '/console/members', title: 'Members' },
  { path: '/console/storage', title: 'Storage' }
] as const

/** @returns a whole page: head, skip link, navigation (the current page marked), main */
export function layout(current: string, title: string, body: Html, scripts: string[] = []): Html {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>${title} · cairn</title>
<link rel="stylesheet" href="/console/assets/console.css">
${scripts.map((s) => html`<script src="/console/assets/${s}" defer></script>`)}
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header>
<span class="brand">cairn</span>
<nav aria-label="Pages"><ul>
${PAGES.map((p) => html`<li><a href="${p.path}"${p.path === current ? html` aria-current="page"` : ''}>${p.title}</a></li>`)}
</ul></nav>
<form method="post" action="/console/logout" class="logout"><button type="submit">Log out</button></form>
</header>
<main id="main" tabindex="-1">
<h1>${title}</h1>
${body}
</main>
</body>
</html>`
}

/** @returns the page a browser without a session gets */
export function loginNeeded(reason: string): Html {
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="color-scheme" content="light dark">
<title>Log in · cairn</title><link rel="stylesheet" href="/console/assets/console.css"></head>
<body><main id="main"><h1>cairn console</h1>
<p class="notice">${reason}</p>
<p>On the machine that runs the node, run <code>cairn console --data DIR</code> and open the link it prints. Each link works once.</p>
</main></body></html>`
}

const ago = (seconds: number): string => (seconds < 120 ? `${seconds} s` : seconds < 7200 ? `${Math.round(seconds / 60)} min` : `${Math.round(seconds / 3600)} h`)
const bytes = (n: number): string => (n < 1024 ? `${n} B` : n < 1024 ** 2 ? `${(n / 1024).toFixed(1)} KiB` : n < 1024 ** 3 ? `${(n / 1024 ** 2).toFixed(1)} MiB` : `${(n / 1024 ** 3).toFixed(2)} GiB`)

/** @returns the overview: verdict, identity, peers and the live charts (console.js fills and refreshes them) */
export function overviewPage(s: StatusDocument): Html {
  return layout(
    '/',
    'Overview',
    html`<section aria-labelledby="verdict-h" class="card">
<h2 id="verdict-h">Health</h2>
<p><span id="verdict" class="verdict ${s.verdict}" aria-live="polite">${s.verdict}</span></p>
<ul id="reasons">${s.reasons.map((r) => html`<li>${r}</li>`)}</ul>
</section>
<section aria-labelledby="node-h" class="card">
<h2 id="node-h">This node</h2>
<dl class="facts">
<dt>Peer id</dt><dd><code id="peer-id">${s.peer_id}</code> <button type="button" class="copy" data-copy="peer-id">Copy</button></dd>
<dt>Version</dt><dd id="version">${versionText(s)}</dd>
<dt>Uptime</dt><dd id="uptime">${ago(s.uptime_s)}</dd>
<dt>Network</dt><dd><code>${s.network}</code></dd>
<dt>Bus root</dt><dd><code id="bus-root">${s.bus_root}</code> <button type="button" class="copy" data-copy="bus-root">Copy</button></dd>
<dt>Events</dt><dd id="events-count">${s.events}</dd>
</dl>
</section>
<section aria-labelledby="peers-h" class="card">
<h2 id="peers-h">Peers (<span id="peer-count">${s.peers.length}</span>)</h2>
<ul id="peers" class="mono">${s.peers.map((p) => html`<li>${p}</li>`)}</ul>
</section>
<section aria-labelledby="rate-h" class="card wide">
<h2 id="rate-h">Events per second</h2>
<div id="chart-rate" class="chart" role="img" aria-label="Events per second published, ingested and applied over the last minutes"></div>
</section>
<section aria-labelledby="lag-h" class="card wide">
<h2 id="lag-h">Lag per producer (events)</h2>
<div id="chart-lag" class="chart" role="img" aria-label="Events each producer's head is ahead of what this node stored, over the last minutes"></div>
</section>`,
    ['uplot.js', 'console.js']
  )
}

/** @returns the producers table: head, stored and applied seqs, lag, last error, gaps and the own retention horizon */
export function producersPage(s: StatusDocument): Html {
  const gapsOf = (p: ProducerStatus): string => {
    const shown = s.gaps.filter((g) => g.producer === p.producer)
    const more = (p.lost_gaps ?? shown.length) - shown.length
    return [...shown.map(gapRangeText), ...(more > 0 ? [`and ${more} more`] : [])].join(', ')
  }
  // Pruned before this node joined (horizon) or superseded (compacted): information, not an alarm.
  const historyOf = (p: string): string => {
    const h = s.history.find((x) => x.producer === p)
    if (h == null) return 'seq 1'
    return [h.history_from_seq > 1 ? `history from seq ${h.history_from_seq}` : 'seq 1', ...(h.compacted_seqs > 0 ? [`${h.compacted_seqs} seqs compacted`] : [])].join('; ')
  }
  return layout(
    '/console/producers',
    'Producers',
    html`<div class="scroll"><table>
<caption>Every producer this node tracks. Stored: the seq up to which this node holds its events with none missing. Applied: up to which the plugins processed them as they arrived (what this node's heads acknowledge). Lag is how far its head is ahead of what this node stored. Kept from: this node's own oldest file kept; for others, where their history starts here (pruned before this node joined) and how many seqs compaction removed (superseded by newer events).</caption>
<thead><tr><th scope="col">Producer</th><th scope="col" class="num">Head</th><th scope="col" class="num">Stored</th><th scope="col" class="num">Applied</th><th scope="col" class="num">Lag (events)</th><th scope="col" class="num">Lag (time)</th><th scope="col">Gaps</th><th scope="col">Kept from</th><th scope="col">Last error</th></tr></thead>
<tbody>${s.producers.map(
      (p) => html`<tr${p.producer === s.peer_id ? html` class="self"` : ''}><th scope="row"><code>${p.producer}</code>${p.producer === s.peer_id ? ' (this node)' : ''}</th>
<td class="num">${p.head_seq}</td><td class="num">${p.processed_seq}</td><td class="num">${p.applied_seq}</td><td class="num">${p.lag_events}</td><td class="num">${p.lag_ms > 0 ? `${(p.lag_ms / 1000).toFixed(1)} s` : '-'}</td>
<td>${gapsOf(p) || 'none'}</td><td>${p.producer === s.peer_id ? (s.outbox.oldest_seq == null ? 'nothing kept' : `seq ${s.outbox.oldest_seq}`) : historyOf(p.producer)}</td><td>${p.last_error ?? ''}</td></tr>`
    )}</tbody>
</table></div>
${s.producers.length === 0 ? html`<p>No producer yet: publish an event or connect a peer.</p>` : ''}`
  )
}

/** @returns where an event's file lives under the bus root: `<producer>/<day>/<hour>/<seq>-<event_id>.json` */
export function eventPath(r: EventRow): string {
  // The producer files an event under the hour of its occurred_at (see the outbox's commit).
  const place = filePlace(r.seq, r.event_id, new Date(r.occurred_at))
  return `${r.producer}/${place.day}/${place.hour}/${place.name}`
}

/** @returns the events page: filters, the newest rows, then the live tail console.js appends to */
export function eventsPage(rows: EventRow[], filter: { type?: string; producer?: string }, after: number): Html {
  return layout(
    '/console/events',
    'Events',
    html`<form method="get" action="/console/events" class="filters" aria-label="Filters">
<label>Type <input name="type" value="${filter.type ?? ''}" placeholder="any type" autocomplete="off"></label>
<label>Producer <input name="producer" value="${filter.producer ?? ''}" placeholder="any producer" autocomplete="off" size="30"></label>
<button type="submit">Filter</button>
</form>
<p id="tail-state" aria-live="polite" class="muted">Showing the newest ${rows.length} event(s); new ones appear at the top as this node applies them.</p>
<ol id="events" class="events" data-after="${after}" data-type="${filter.type ?? ''}" data-producer="${filter.producer ?? ''}">
${rows.map(eventItem)}
</ol>`,
    ['console.js']
  )
}

/** @returns one event as an expandable item: its summary, then its envelope, file path and CID */
export function eventItem(r: EventRow): Html {
  return html`<li><details><summary><span class="cursor">#${r.cursor}</span> <span class="type">${r.type} v${r.version}</span> <code class="producer" title="${r.producer}">${r.producer.slice(-8)}#${r.seq}</code> <time>${r.occurred_at}</time></summary>
<dl class="facts"><dt>File</dt><dd><code>${eventPath(r)}</code></dd><dt>CID</dt><dd><code>${r.cid}</code></dd></dl>
<pre>${JSON.stringify(rowToEnvelope(r), null, 2)}</pre></details></li>`
}

/** What the plugins page shows. */
export interface PluginsView {
  plugins: Array<PluginInfo & { backlog: number; schemas: Record<string, object> }>
  /** per plugin, where its state comes from (status's plugin_state) */
  states: PluginStateStatus[]
  backlog: number
  retrying: number
  /** the first dead letters, of `deadTotal` */
  dead: DeadLetter[]
  deadTotal: number
  /** the first held events, of `heldTotal` */
  held: HeldEvent[]
  heldTotal: number
  notice?: string
}

/** @returns the plugins page: each plugin with its types and schemas, the backlog, dead letters with Replay, held events */
export function pluginsPage(v: PluginsView): Html {
  const stateOf = (name: string): Html | string => {
    const st = v.states.find((x) => x.plugin === name)
    if (st == null) return ''
    return html`<p${st.disagreement != null ? html` class="bad"` : ''}>State: ${st.state}</p>`
  }
  return layout(
    '/console/plugins',
    'Plugins',
    html`${v.notice != null ? html`<p class="notice" role="status">${v.notice}</p>` : ''}
<p>Backlog: <strong id="backlog">${v.backlog}</strong> event(s) not yet processed by every plugin; ${v.retrying} waiting for a retry.</p>
<section aria-labelledby="dead-h" class="card wide"><h2 id="dead-h">Dead letters (${v.deadTotal})</h2>
${v.deadTotal > v.dead.length ? html`<p class="muted">The first ${v.dead.length} are listed; cairn dead lists them all, cairn replay --dead replays them all.</p>` : ''}
${
  v.dead.length === 0
    ? html`<p>None.</p>`
    : html`<div class="scroll"><table><thead><tr><th scope="col">Event</th><th scope="col">Type</th><th scope="col">Producer</th><th scope="col">Plugin</th><th scope="col" class="num">Attempts</th><th scope="col">Error</th><th scope="col">Since</th><th scope="col"><span class="sr-only">Action</span></th></tr></thead>
<tbody>${v.dead.map(
        (
          d
        ) => html`<tr><th scope="row"><code>${d.event_id}</code></th><td>${d.type}</td><td><code title="${d.producer}">${d.producer.slice(-8)}#${d.seq}</code></td><td>${d.plugin}</td><td class="num">${d.attempts}</td><td>${d.error}</td><td>${d.dead_at}</td>
<td><form method="post" action="/console/replay"><input type="hidden" name="event_id" value="${d.event_id}"><input type="hidden" name="producer" value="${d.producer}"><button type="submit" aria-label="Replay ${d.event_id}">Replay</button></form></td></tr>`
      )}</tbody></table></div>`
}</section>
<section aria-labelledby="held-h" class="card wide"><h2 id="held-h">Held events (${v.heldTotal})</h2>
${v.heldTotal > v.held.length ? html`<p class="muted">The first ${v.held.length} are listed.</p>` : ''}
<p class="muted">Events of a version no loaded plugin reads; they run once a plugin that knows the version is loaded.</p>
${
  v.held.length === 0
    ? html`<p>None.</p>`
    : html`<div class="scroll"><table><thead><tr><th scope="col">Event</th><th scope="col">Type</th><th scope="col">Producer</th><th scope="col">Plugin</th></tr></thead>
<tbody>${v.held.map((h) => html`<tr><th scope="row"><code>${h.event_id}</code></th><td>${h.type} v${h.version}</td><td><code title="${h.producer}">${h.producer.slice(-8)}</code></td><td>${h.plugin}</td></tr>`)}</tbody></table></div>`
}</section>
${v.plugins.map(
  (p) => html`<section class="card" aria-label="Plugin ${p.name}"><h2>${p.name}${p.version != null ? html` <small>${p.version}</small>` : ''}</h2>
<p class="muted">from ${p.source}; tables: ${p.tables.join(', ') || 'none'}</p>
<p>Backlog: <strong>${p.backlog}</strong> event(s) after its cursor.</p>
${p.rebuild == null ? '' : html`<p role="status">Rebuild <strong>${p.rebuild}</strong>: ${p.rebuild === 'running' ? 'new tables are being built beside the current ones, which serve until the new ones replace them at once.' : 'asked; the node starts it within a second.'}</p>`}
${stateOf(p.name)}
<ul>${Object.entries(p.types).map(
    ([t, vs]) => html`<li><code>${t}</code> versions ${vs.join(', ')}<details><summary>JSON Schema of ${t}</summary><pre>${JSON.stringify(p.schemas[t], null, 2)}</pre></details></li>`
  )}</ul></section>`
)}
${v.plugins.length === 0 ? html`<p>No plugin is loaded: events are stored and streamed only.</p>` : ''}`
  )
}

/** What the Members page shows. */
export interface MembersPageView {
  source: 'changes' | 'setting' | 'open'
  self_is_owner: boolean
  members: Array<{ peer_id: string; name: string | null; role?: string; connected?: boolean; self?: boolean }>
  /** removed members: their events up to last_seq stay valid, later ones are refused */
  removed?: Array<{ peer_id: string; name: string | null; last_seq: number; removed_by: string; removed_at: string }>
  /** the owners' changes that took no effect, the last to arrive, and how many in all */
  refused?: MembersView['refused']
  refused_total?: number
  /** whether membership changes exist on this node (else the membership is the static setting) */
  editable: boolean
  notice?: string
  error?: string
}

/** @returns the members page: the list, and for an owner the forms that add and remove members */
export function membersPage(v: MembersPageView): Html {
  const owner = v.editable && v.self_is_owner
  return layout(
    '/console/members',
    'Members',
    html`${v.notice != null ? html`<p class="notice" role="status">${v.notice}</p>` : ''}${v.error != null ? html`<p class="notice bad" role="alert">${v.error}</p>` : ''}
${
  !v.editable
    ? html`<p class="notice">Membership is the static setting: the <code>members</code> list in config.json (or <code>--members</code>), read at start. Change it there and restart the node.</p>`
    : v.source === 'changes'
      ? html`<p>Membership follows the owners' signed changes.${owner ? ' This node is an owner: it can add and remove members.' : ' Only an owner can change it.'}</p>`
      : html`<p>Membership is ${v.source === 'setting' ? 'the static members setting' : 'open to every holder of the swarm key'} until an owner publishes the first change.${owner ? ` This node is an owner: adding a member publishes that change.${v.source === 'setting' ? ' From then on the setting no longer counts: add each member of it that you keep, or its heads are refused.' : ''}` : ''}</p>`
}
${
  v.source === 'open' && v.members.length === 0
    ? html`<p>No members list is set: this node takes events from every producer in its private network (the swarm key is the boundary).</p>`
    : html`<div class="scroll"><table><thead><tr><th scope="col">Peer id</th><th scope="col">Name</th><th scope="col">Role</th><th scope="col">Connected</th>${owner ? html`<th scope="col"><span class="sr-only">Action</span></th>` : ''}</tr></thead>
<tbody>${v.members.map(
        (
          m
        ) => html`<tr><th scope="row"><code>${m.peer_id}</code>${m.self === true ? ' (this node)' : ''}</th><td>${m.name ?? ''}</td><td>${m.role ?? 'member'}</td><td>${m.self === true || m.connected == null ? '-' : m.connected ? 'yes' : 'no'}</td>
${owner ? html`<td>${m.self === true || (v.source === 'setting' && m.role !== 'owner') ? '' : html`<form method="post" action="/console/members/remove"><input type="hidden" name="peer_id" value="${m.peer_id}"><button type="submit" aria-label="Remove ${m.peer_id}">Remove</button></form>`}</td>` : ''}</tr>`
      )}</tbody></table></div>`
}
${
  v.removed != null && v.removed.length > 0
    ? html`<section class="card wide" aria-labelledby="removed-h"><h2 id="removed-h">Removed (${v.removed.length})</h2>
<p class="muted">Their events up to the seq an owner recorded stay valid; later ones are refused on every node.${owner ? ' Adding one again re-admits it.' : ''}</p>
<div class="scroll"><table><thead><tr><th scope="col">Peer id</th><th scope="col">Name</th><th scope="col" class="num">Valid up to seq</th><th scope="col">Removed by</th><th scope="col">At</th></tr></thead>
<tbody>${v.removed.map(
        (r) =>
          html`<tr><th scope="row"><code>${r.peer_id}</code></th><td>${r.name ?? ''}</td><td class="num">${r.last_seq}</td><td><code title="${r.removed_by}">${r.removed_by.slice(-8)}</code></td><td>${r.removed_at}</td></tr>`
      )}</tbody></table></div></section>`
    : ''
}
${
  v.refused != null && v.refused.length > 0
    ? html`<section class="card wide" aria-labelledby="refused-h"><h2 id="refused-h">Changes that took no effect (${v.refused_total ?? v.refused.length})</h2>
<p class="muted">Owners' changes every node refuses when it folds them in order${(v.refused_total ?? 0) > v.refused.length ? html`; the last ${v.refused.length} to arrive here are listed` : ''}.</p>
<div class="scroll"><table><thead><tr><th scope="col">Change</th><th scope="col">By</th><th scope="col">Reason</th><th scope="col">Why</th></tr></thead>
<tbody>${v.refused.map(
        (c) => html`<tr><th scope="row"><code>${c.event_id}</code></th><td><code title="${c.producer}">${c.producer.slice(-8)}#${c.seq}</code></td><td>${c.reason}</td><td>${c.detail}</td></tr>`
      )}</tbody></table></div></section>`
    : ''
}
${
  owner
    ? html`<form method="post" action="/console/members" class="filters card wide" aria-label="Add a member">
<label>Peer id <input name="peer_id" required size="52" autocomplete="off"></label>
<label>Name <input name="name" autocomplete="off"></label>
<label>Role <select name="role"><option value="member">member</option><option value="owner">owner</option></select></label>
<button type="submit">Add member</button></form>`
    : ''
}`
  )
}

/** What the storage page shows beyond the status. */
export interface StorageView {
  blocks: number
  /** blocks.db on disk, its write-ahead log included */
  blocks_bytes: number
  /** cairn.db on disk, its write-ahead log included */
  database_bytes: number
}

/** @returns the housekeeping and storage page */
export function storagePage(s: StatusDocument, st: StorageView): Html {
  const hk = s.housekeeping.last
  return layout(
    '/console/storage',
    'Storage',
    html`<section class="card" aria-labelledby="outbox-h"><h2 id="outbox-h">Outbox</h2><dl class="facts">
<dt>Files</dt><dd>${s.outbox.files}</dd><dt>Oldest seq kept</dt><dd>${s.outbox.oldest_seq ?? '-'}</dd><dt>Last seq</dt><dd>${s.outbox.last_seq}</dd><dt>Compacted out</dt><dd>${s.outbox.compacted_files} file(s), superseded by newer events</dd></dl></section>
<section class="card" aria-labelledby="blocks-h"><h2 id="blocks-h">Blocks and database</h2><dl class="facts">
<dt>Blocks</dt><dd>${st.blocks}</dd><dt>blocks.db</dt><dd>${bytes(st.blocks_bytes)}</dd><dt>Events table</dt><dd>${s.events} event(s)</dd><dt>cairn.db</dt><dd>${bytes(st.database_bytes)}</dd></dl></section>
<section class="card" aria-labelledby="hk-h"><h2 id="hk-h">Housekeeping</h2>
${
  hk == null
    ? html`<p>Not run yet.</p>`
    : html`<dl class="facts"><dt>Last run</dt><dd><time>${hk.at}</time></dd><dt>Files pruned</dt><dd>${hk.pruned_files}${hk.compacted_files > 0 ? ` (${hk.compacted_files} compacted)` : ''}</dd>${hk.events_deleted > 0 ? html`<dt>Event rows deleted</dt><dd>${hk.events_deleted}</dd>` : ''}<dt>Blocks deleted</dt><dd>${hk.blocks_deleted}</dd><dt>Reclaimed</dt><dd>${bytes(hk.reclaimed_bytes)}</dd>
<dt>Held back by</dt><dd>${hk.held_back_by.length === 0 ? 'nobody' : hk.held_back_by.join(', ')}</dd>${hk.kept_for_clock != null ? html`<dt>Kept for the clock</dt><dd class="bad">${hk.kept_for_clock.files} file(s): this node's clock is ahead of the time it can account for (see the status reasons)</dd>` : ''}${hk.error != null ? html`<dt>Error</dt><dd class="bad">${hk.error}</dd>` : ''}</dl>`
}
<p>Reclaimed since the data directory was created: <strong>${bytes(s.housekeeping.reclaimed_bytes)}</strong>.</p></section>
<section class="card" aria-labelledby="q-h"><h2 id="q-h">Quarantine and gaps</h2><dl class="facts">
<dt>Quarantined files</dt><dd>${s.quarantine.count}${
      s.quarantine.count > 0
        ? ` (${Object.entries(s.quarantine.by_reason)
            .map(([k, n]) => `${k}: ${n}`)
            .join(', ')})`
        : ''
    }</dd>
<dt>Gaps</dt><dd>${s.gaps.length === 0 ? 'none' : `${s.gaps.map((g) => `${g.producer.slice(-8)} ${gapRangeText(g)}`).join(', ')}${(s.gaps_total ?? s.gaps.length) > s.gaps.length ? ` and ${(s.gaps_total ?? s.gaps.length) - s.gaps.length} more` : ''}`}</dd></dl></section>`
  )
}
