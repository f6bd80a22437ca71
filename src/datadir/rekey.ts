import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import { UsageError } from '../errors.ts'
import { dataPaths } from './layout.ts'
import { assertDataDir, loadSwarmKey } from './load.ts'
import { lockDataDir } from './lock.ts'
import { networkId, newSwarmKey, parseSwarmKey } from './swarmKey.ts'

/**
 * Replaces a stopped node's swarm key: with a new random one (the first node of a rotation) or with the one
 * in `keyFile` (every other node). The old key is kept as swarm.key.previous. Nothing else changes: the
 * identity, the outbox and every event stay, so the node catches up with the others once they switched too.
 *
 * @returns the network ids (a hash of the key) before and after
 * @throws DataDirBusyError while a node runs on `dir`; UsageError for a bad key file or the same key
 */
export async function rekeyDataDir(dir: string, options: { newKey?: boolean; keyFile?: string }): Promise<{ before: string; after: string }> {
  if ((options.newKey === true) === (options.keyFile != null)) throw new UsageError('cairn rekey needs exactly one of --new (a new random key) or --swarm-key FILE (the key other nodes switched to)')
  assertDataDir(dir)
  const release = lockDataDir(dir)
  try {
    const paths = dataPaths(dir)
    const old = loadSwarmKey(dir)
    let next: Uint8Array
    if (options.keyFile != null) {
      let text: string
      try {
        text = readFileSync(options.keyFile, 'utf8')
      } catch (err) {
        throw new UsageError(`Cannot read --swarm-key ${options.keyFile}: ${(err as Error).message}`)
      }
      try {
        next = parseSwarmKey(text, options.keyFile)
      } catch (err) {
        throw new UsageError((err as Error).message)
      }
    } else {
      next = newSwarmKey()
    }
    const [before, after] = [await networkId(old), await networkId(next)]
    if (before === after) throw new UsageError(`${options.keyFile ?? 'the new key'} is the key ${dir} already has; nothing changed`)
    writeFileSync(paths.previousSwarmKey, old, { mode: 0o600 })
    writeFileSync(`${paths.swarmKey}.tmp`, next, { mode: 0o600 })
    renameSync(`${paths.swarmKey}.tmp`, paths.swarmKey)
    return { before, after }
  } finally {
    release()
  }
}
