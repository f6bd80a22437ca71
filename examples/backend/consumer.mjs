// A consumer that survives restarts of itself and of the node (docs/api.md): node examples/backend/consumer.mjs DATA_DIR FILE [TYPE]
import { appendFileSync, existsSync, readFileSync } from 'node:fs'
import { CairnClient } from 'cairn/client'

const [dataDir, file, type = 'order.placed'] = process.argv.slice(2)
const lines = existsSync(file)
  ? readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
  : []
const last = lines.length > 0 ? JSON.parse(lines.at(-1)) : { cursor: 0 }
const cairn = new CairnClient({ dataDir })
for await (const item of cairn.subscribe({ types: [type], after: last.cursor, cursorSpace: last.cursor_space })) {
  if (item.kind === 'caught-up') console.error(`caught up at cursor ${item.cursor}`)
  if (item.kind !== 'event') continue
  // The work and the cursor are one line, written at once: done together or not at all. An event is its
  // (producer, event_id): an event_id is unique only within its producer.
  const { producer, event_id } = item.event
  appendFileSync(file, `${JSON.stringify({ producer, event_id, cursor: item.cursor, cursor_space: item.cursorSpace })}\n`)
}
