// The console's browser script: copy buttons, the overview's live numbers and charts, the events page's live tail.
// It reads only this endpoint's console routes; the session cookie goes with each request.

const MAX_TAIL = 500

for (const button of document.querySelectorAll('button[data-copy]')) {
  button.addEventListener('click', async () => {
    const text = document.getElementById(button.dataset.copy)?.textContent ?? ''
    try {
      await navigator.clipboard.writeText(text)
      button.textContent = 'Copied'
    } catch {
      button.textContent = 'Select and copy'
    }
    setTimeout(() => {
      button.textContent = 'Copy'
    }, 1500)
  })
}

const cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim()
const ago = (s) => (s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`)
const setText = (id, text) => {
  const el = document.getElementById(id)
  if (el != null && el.textContent !== String(text)) el.textContent = String(text)
}
const setList = (id, items) => {
  const el = document.getElementById(id)
  if (el == null) return
  el.replaceChildren(
    ...items.map((t) => {
      const li = document.createElement('li')
      li.textContent = t
      return li
    })
  )
}

function chart(el, series, data) {
  const axis = { stroke: cssVar('--fg'), grid: { stroke: cssVar('--grid') }, ticks: { stroke: cssVar('--grid') } }
  return new uPlot({ width: Math.max(el.clientWidth, 240), height: 220, series: [{}, ...series], axes: [axis, { ...axis, size: 60 }], legend: { live: false } }, data, el)
}

function overview() {
  const rateEl = document.getElementById('chart-rate')
  const lagEl = document.getElementById('chart-lag')
  if (rateEl == null || lagEl == null || typeof uPlot !== 'function') return
  const colors = [cssVar('--c1'), cssVar('--c2'), cssVar('--c3'), cssVar('--c4'), cssVar('--c5'), cssVar('--c6'), cssVar('--c7'), cssVar('--c8')]
  const rate = chart(
    rateEl,
    [
      { label: 'published', stroke: colors[0], width: 2 },
      { label: 'ingested', stroke: colors[1], width: 2 },
      { label: 'applied', stroke: colors[2], width: 2 }
    ],
    [[], [], [], []]
  )
  let lag
  let lagKeys = ''
  const refresh = async () => {
    let body
    try {
      const res = await fetch('/console/api/overview', { credentials: 'same-origin' })
      if (res.status === 401) {
        location.reload()
        return
      }
      body = await res.json()
    } catch {
      setText('verdict', 'unreachable')
      return
    }
    const { status: s, series } = body
    const verdict = document.getElementById('verdict')
    setText('verdict', s.verdict)
    verdict.className = `verdict ${s.verdict}`
    setList('reasons', s.reasons)
    setText('uptime', ago(s.uptime_s))
    setText('bus-root', s.bus_root)
    setText('events-count', s.events)
    setText('peer-count', s.peers.length)
    setList('peers', s.peers)
    rate.setData([series.t, series.published, series.ingested, series.applied])
    const keys = Object.keys(series.lag)
    if (lag == null || keys.join() !== lagKeys) {
      lag?.destroy()
      lagKeys = keys.join()
      lag = chart(
        lagEl,
        keys.map((p, i) => ({ label: p.slice(-8), stroke: colors[i % colors.length], width: 2 })),
        [series.t, ...keys.map((k) => series.lag[k])]
      )
    } else lag.setData([series.t, ...keys.map((k) => series.lag[k])])
  }
  addEventListener('resize', () => {
    rate.setSize({ width: Math.max(rateEl.clientWidth, 240), height: 220 })
    lag?.setSize({ width: Math.max(lagEl.clientWidth, 240), height: 220 })
  })
  void refresh()
  setInterval(refresh, 2000)
}

function eventItem(e) {
  const li = document.createElement('li')
  li.className = 'new'
  const details = document.createElement('details')
  const summary = document.createElement('summary')
  const span = (cls, text, tag = 'span') => {
    const el = document.createElement(tag)
    el.className = cls
    el.textContent = text
    return el
  }
  const producer = span('producer', `${e.producer.slice(-8)}#${e.seq}`, 'code')
  producer.title = e.producer
  summary.append(span('cursor', `#${e.cursor}`), ' ', span('type', `${e.type} v${e.version}`), ' ', producer, ' ', span('', e.occurred_at, 'time'))
  const at = new Date(e.occurred_at).toISOString()
  const path = `${e.producer}/${at.slice(0, 10)}/${at.slice(11, 13)}/${String(e.seq).padStart(12, '0')}-${e.event_id}.json`
  const facts = document.createElement('dl')
  facts.className = 'facts'
  facts.append(span('', 'File', 'dt'), document.createElement('dd'), span('', 'CID', 'dt'), document.createElement('dd'))
  facts.children[1].append(span('', path, 'code'))
  facts.children[3].append(span('', e.cid, 'code'))
  const { cursor: _c, cid: _cid, ...envelope } = e
  details.append(summary, facts, span('', JSON.stringify(envelope, null, 2), 'pre'))
  li.append(details)
  return li
}

function tail() {
  const list = document.getElementById('events')
  if (list == null) return
  const { after, type, producer } = list.dataset
  const query = new URLSearchParams({ after })
  if (type !== '') query.set('types', type)
  const source = new EventSource(`/console/api/stream?${query}`)
  const state = document.getElementById('tail-state')
  let seen = 0
  // An event arrives as an 'event' message, or (the stream's later format) an unnamed one.
  const onEvent = (m) => {
    const e = JSON.parse(m.data)
    if (producer !== '' && e.producer !== producer) return
    list.prepend(eventItem(e))
    while (list.children.length > MAX_TAIL) list.lastElementChild.remove()
    seen++
    state.textContent = `Live: ${seen} new event(s) since this page opened.`
  }
  source.addEventListener('event', onEvent)
  source.addEventListener('message', onEvent)
  source.addEventListener('open', () => {
    state.dataset.live = 'true'
  })
  source.addEventListener('error', () => {
    state.textContent = 'The live tail lost the node; it reconnects on its own.'
  })
}

overview()
tail()
