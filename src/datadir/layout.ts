import { join } from 'node:path'

/** The files of a data directory. These names are a contract: operators back them up and scripts read them. */
export function dataPaths(dir: string) {
  return {
    dir,
    identity: join(dir, 'identity.key'),
    swarmKey: join(dir, 'swarm.key'),
    /** the key `cairn rekey` replaced, kept to go back if a rotation is abandoned */
    previousSwarmKey: join(dir, 'swarm.key.previous'),
    apiToken: join(dir, 'api.token'),
    database: join(dir, 'cairn.db'),
    blocks: join(dir, 'blocks.db'),
    datastore: join(dir, 'datastore'),
    config: join(dir, 'config.json'),
    lock: join(dir, 'run.lock'),
    runInfo: join(dir, 'node.json')
  }
}
