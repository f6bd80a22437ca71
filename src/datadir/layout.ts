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
    /**
     * the kernel's lock on the directory: held by the running node (a SQLite file, locked exclusively), freed
     * when its process ends however it ends; created once and never removed or replaced
     */
    instance: join(dir, 'instance.lock'),
    /** the running node's pid, for people and for older cairns (which lock the directory with it alone) */
    lock: join(dir, 'run.lock'),
    runInfo: join(dir, 'node.json')
  }
}
