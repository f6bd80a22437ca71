import type { Log } from '../log/logger.ts'
import type { SyncProgress } from './events.ts'

const WIDTH = 30

/**
 * @returns a renderer of catch-up progress: a bar redrawn in place on a terminal, a log line otherwise
 * @param write writes raw text to the operator's terminal; undefined when no one watches one
 */
export function progressRenderer(log: Log, write: ((text: string) => void) | undefined): (p: SyncProgress) => void {
  return (p) => {
    if (write == null) {
      log.info('catching up', { ...p })
      return
    }
    const filled = Math.round((WIDTH * p.done) / p.total)
    write(`\rcatching up ${p.producer.slice(-8)} [${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}] ${p.done}/${p.total} ${p.rate}/s ETA ${p.eta_s}s${p.done === p.total ? '\n' : ''}`)
  }
}
