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

/**
 * What each entry of a data directory must be where it exists, and what to do when it is something else:
 * `datastore` a directory, every other one a file (a symbolic link to one counts as one).
 */
export function dataDirEntries(dir: string): Array<{ path: string; directory: boolean; fix: string }> {
  const p = dataPaths(dir)
  const restore = 'move it away and restore the file from a backup'
  return [
    { path: p.identity, directory: false, fix: restore },
    { path: p.swarmKey, directory: false, fix: "move it away and copy the network's swarm.key there" },
    { path: p.previousSwarmKey, directory: false, fix: 'move it away' },
    { path: p.apiToken, directory: false, fix: 'move it away and write a random token of at least 16 characters there' },
    { path: p.database, directory: false, fix: restore },
    { path: p.blocks, directory: false, fix: restore },
    { path: p.config, directory: false, fix: 'move it away and write the settings there as a JSON object' },
    { path: p.instance, directory: false, fix: 'move it away (the next cairn run creates it)' },
    { path: p.lock, directory: false, fix: 'move it away (the next cairn run writes it)' },
    { path: p.runInfo, directory: false, fix: 'move it away (the next cairn run writes it)' },
    { path: p.datastore, directory: true, fix: "move it away (the next cairn run makes an empty one: it holds only the peers' addresses, learnt again from --bootstrap)" }
  ]
}
