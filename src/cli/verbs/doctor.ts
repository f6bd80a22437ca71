import { looseModes } from '../../datadir/modes.ts'
import { existsSync } from 'node:fs'
import { CID } from 'multiformats/cid'
import { defineVerb } from '../verb.ts'
import { SETTINGS } from '../../config/catalog.ts'
import { OPTIONS } from '../options.ts'
import { dataPaths } from '../../datadir/layout.ts'
import { assertInitialised, loadApiToken, loadIdentity, loadSwarmKey, missingBlockStore, wrongEntries } from '../../datadir/load.ts'
import { lockHolder, runningPid } from '../../datadir/lock.ts'
import { readRunInfo } from '../../datadir/runInfo.ts'
import { diskFull, diskSpace, unwritableAdvice, whyNotWritable } from '../../datadir/problems.ts'
import { VERSION_TEXT, versionText } from '../../version.ts'
import { openDatabase } from '../../runtime/sqlite.ts'
import { MIGRATIONS } from '../../store/migrations.ts'
import { openBlockReader, type SqliteBlockstore } from '../../store/blockstore.ts'
import { Store } from '../../store/store.ts'
import { readTrees, walkDag } from '../../unixfs/walk.ts'
import { checkOutboxBlocks } from '../../publish/recover.ts'

interface Check {
  check: string
  ok: boolean
  detail: string
  fix?: string
  /** the check could not run (it needs what an earlier check found wrong): `detail` says why */
  skipped?: true
}

/** @returns what to do about a cairn.db whose schema is behind this binary's, from who runs on `dir` */
function migrateFix(dir: string): string {
  const pid = runningPid(dir)
  if (pid == null)
    return `start the node with this cairn once (cairn run --data ${dir} migrates the database at start), or run a command of this cairn that opens it (cairn events --data ${dir}); then run cairn doctor again`
  const info = readRunInfo(dir)
  if (info == null || info.pid !== pid) return `the node on ${dir} (pid ${pid}) is starting, which migrates it: run cairn doctor again once it has started`
  return `the node running on ${dir} (pid ${pid}) is an older cairn (${versionText(info)}): restart it with this cairn (its start migrates the database), or run that cairn's own doctor`
}

/** @returns what to do about a cairn.db a newer cairn wrote: this cairn cannot read it, and no cairn migrates back */
function newerFix(dir: string): string {
  const pid = runningPid(dir)
  const info = pid == null ? undefined : readRunInfo(dir)
  if (pid != null && info != null && info.pid === pid) return `the node running on ${dir} (pid ${pid}) is cairn ${versionText(info)}: use that cairn's own doctor (this is ${VERSION_TEXT})`
  return `use the newer cairn that wrote it (this is ${VERSION_TEXT}): no cairn migrates a database back; to run this one, restore cairn.db from a backup taken before that upgrade`
}

/** @returns whether a node holds the data directory (instance.lock, or an older cairn's run.lock), in words */
function lockState(dir: string): string {
  const holder = lockHolder(dir)
  if (holder == null) return existsSync(dataPaths(dir).lock) ? 'stale (left by a crash; the next run takes it over)' : 'free'
  if (holder.pid == null) return 'held by a running node (its run.lock names no pid: it is starting or stopping)'
  return holder.here ? `held by running pid ${holder.pid}` : `held by a node in another container or on another host sharing the directory (pid ${holder.pid} there)`
}

/**
 * @returns the CIDs reachable from `root` that are missing from the block database (at most `limit`),
 * with `extra` blocks counted as held
 */
function missingUnder(blocks: SqliteBlockstore, root: string, limit = 20, extra: ReadonlyMap<string, Uint8Array> = new Map()): string[] {
  const missing: string[] = []
  for (const step of walkDag([CID.parse(root)], (cid) => blocks.getSync(cid) ?? extra.get(cid.toString()))) {
    if (step.kind !== 'missing') continue
    missing.push(step.cid.toString())
    if (missing.length >= limit) break
  }
  return missing
}

export const doctorVerb = defineVerb({
  name: 'doctor',
  summary: 'check a data directory (keys, free space, databases, blocks of the outbox and of synced trees) and say what to do',
  usage: '[--data DIR] [--json]',
  settings: [SETTINGS.data, OPTIONS.json],
  details: 'Exits 0 when everything is healthy, 1 otherwise. It only reads: run it while the node runs or after a crash.',
  async run({ values, out }) {
    const dir = values.data as string
    const paths = dataPaths(dir)
    const checks: Check[] = []
    type Outcome = string | undefined | { fine: string }
    /** `fix` is told the error the check threw, if it threw one */
    const add = async (check: string, fn: () => Outcome | Promise<Outcome>, fix?: string | ((err?: unknown) => string)): Promise<void> => {
      const fixFor = (err?: unknown): string | undefined => (typeof fix === 'function' ? fix(err) : fix)
      try {
        const problem = await fn()
        if (typeof problem === 'object') checks.push({ check, ok: true, detail: problem.fine })
        else checks.push(problem == null ? { check, ok: true, detail: 'ok' } : { check, ok: false, detail: problem, fix: fixFor() })
      } catch (err) {
        checks.push({ check, ok: false, detail: (err as Error).message, fix: fixFor(err) })
      }
    }
    /** @returns the fix for a database that failed to open: a full disk or an unwritable file system damages no file, anything else is `damaged` */
    const openFix =
      (path: string, damaged: string) =>
      (err?: unknown): string =>
        (err == null ? undefined : unwritableAdvice(path, err)) ?? damaged
    /** @returns `fix`, unless the check failed because this user may not read the file (the file is fine: permissionDenied says what to do) */
    const unlessDenied =
      (fix: string) =>
      (err?: unknown): string =>
        err instanceof Error && err.message.includes(': permission denied (') ? 'give this user access to the data directory, or run as the user that owns it, as said' : fix
    await add('data directory', () => {
      assertInitialised(dir)
      return undefined
    })
    if (checks[0].ok) {
      // A file where a directory belongs (or the reverse) is reported with the others, which it does not stop.
      const wrong = wrongEntries(dir)
      if (wrong.length > 0) checks.push({ check: 'entries', ok: false, detail: wrong.join('; '), fix: 'move each entry named away, as said' })
      let self: string | undefined
      await add(
        'identity.key',
        async () => {
          self = (await loadIdentity(dir)).peerId.toString()
          return undefined
        },
        unlessDenied('restore identity.key from a backup; without it this node cannot sign as itself')
      )
      await add(
        'swarm.key',
        () => {
          loadSwarmKey(dir)
          return undefined
        },
        unlessDenied("copy the network's swarm.key from another member")
      )
      await add(
        'api.token',
        () => {
          loadApiToken(dir)
          return undefined
        },
        unlessDenied('write a new random token of at least 16 characters to api.token (mode 0600) and give it to the local backend')
      )
      await add(
        'file modes',
        () => {
          const loose = looseModes(dir)
          return loose.length === 0 ? undefined : `open to others: ${loose.map((l) => `${l.path} is ${l.mode.toString(8).padStart(4, '0')}`).join(', ')}`
        },
        'chmod 700 the directories and 600 the files named (cairn run and cairn init do it too)'
      )
      // A node writes its data directory (and SQLite beside each database): one it cannot write, it cannot run on.
      await add(
        'writable',
        () => {
          const why = whyNotWritable(dir)
          return why == null ? undefined : `${dir} cannot be written (${why}): a node cannot run on it, and the commands that write refuse`
        },
        'mount it read-write, or run as the user that owns it; the files are not damaged by this'
      )
      // As status judges it: a file system with (almost) no space left fails every commit, though no file is damaged.
      await add(
        'disk space',
        () => {
          const space = diskSpace(dir)
          if (space == null) return { fine: `not known: the system does not say how much is free on the file system of ${dir}` }
          const left = `${space.free} of ${space.total} bytes free on the file system of ${dir}`
          if (!diskFull(dir, space)) return { fine: left }
          // A read-only file system (an image) has no space to give: the writable check says what matters.
          if (whyNotWritable(dir) != null) return { fine: `${left}; it is not writable (see writable)` }
          return `the disk is full: ${left}; a node's commits fail (publishes are answered 503 commit_failed) and its databases cannot grow`
        },
        'free space on that file system, or move the data directory to a larger one; the files are not damaged by this'
      )
      let db: Store | undefined
      let blocks: SqliteBlockstore | undefined
      await add(
        'cairn.db',
        async () => {
          db = new Store(await openDatabase(paths.database, { readonly: true }))
          const integrity = db.integrity()
          return integrity === 'ok' ? undefined : `integrity check failed: ${integrity}`
        },
        openFix(paths.database, 'restore cairn.db from a backup (sqlite3 .backup copies are consistent)')
      )
      // The checks below read cairn.db's tables as this cairn's schema has them: on another version they would
      // fail on a missing column or, worse, pass on the wrong one.
      let schemaProblem: string | undefined
      if (db != null && checks.at(-1)?.ok === true) {
        const d = db
        let newer = false
        await add(
          'cairn.db schema',
          () => {
            const version = d.schemaVersion()
            if (version === MIGRATIONS.length) return { fine: `version ${version}` }
            newer = version > MIGRATIONS.length
            schemaProblem = `cairn.db's schema is at version ${version}, ${newer ? 'newer' : 'older'} than this cairn's (${MIGRATIONS.length})`
            return newer
              ? `version ${version} is newer than this cairn knows (${MIGRATIONS.length}): a newer cairn wrote it`
              : `version ${version} is older than this cairn's (${MIGRATIONS.length}): the database is not migrated to this cairn yet`
          },
          () => (schemaProblem == null ? 'restore cairn.db from a backup (sqlite3 .backup copies are consistent)' : newer ? newerFix(dir) : migrateFix(dir))
        )
        schemaProblem ??= checks.at(-1)?.ok === true ? undefined : 'cairn.db has no schema version this cairn can read'
      }
      await add(
        'blocks.db',
        async () => {
          if (!existsSync(paths.blocks) && db != null && schemaProblem == null) {
            // As a start judges it: missing is a loss only when cairn.db records a tree whose blocks it held.
            return missingBlockStore(paths.blocks, db) ?? { fine: 'missing: this node published nothing and synced no tree, and its next start makes a new one' }
          }
          blocks = await openBlockReader(paths.blocks)
          const integrity = blocks.integrity()
          return integrity === 'ok' ? undefined : `integrity check failed: ${integrity}`
        },
        openFix(paths.blocks, 'restore blocks.db and cairn.db from the same backup (docs/operations.md, "Backups")')
      )
      const treeChecks = ['outbox blocks', 'synced trees']
      if (schemaProblem != null) {
        for (const check of treeChecks) {
          checks.push({ check, ok: false, skipped: true, detail: `not checked: ${schemaProblem}`, fix: "run cairn doctor again once cairn.db is at this cairn's schema (see cairn.db schema)" })
        }
      } else if (db != null && blocks != null && checks.every((c) => c.ok || !['cairn.db', 'blocks.db', 'cairn.db schema'].includes(c.check))) {
        const d = db
        const b = blocks
        await add(
          'outbox blocks',
          async () => {
            // The node may be running: its collection may move the root on between the reads (see readTrees).
            const { root, missing } = await readTrees(
              b,
              () => d.outbox.root(),
              (root) => ({ root, missing: root == null ? [] : missingUnder(b, root) }),
              (r) => r.missing.length === 0
            )
            if (root == null || missing.length === 0) return undefined
            const problem = `the own outbox tree misses ${missing.length === 20 ? '20 or more' : missing.length} block(s), e.g. ${missing[0]}`
            if (self == null) return problem
            // What the next start rebuilds from cairn.db: the blocks of the commits that blocks.db had not synced.
            const repair = await checkOutboxBlocks(d, b, self)
            if (repair.lost.length > 0) return `${problem}; cannot be rebuilt from cairn.db: ${repair.lost.map((l) => `${l.what}: ${l.reason}`).join('; ')}`
            const rebuilt = new Map(repair.rebuilt.map((x) => [x.cid.toString(), x.bytes]))
            if (repair.rebuilt.length > 0 && missingUnder(b, root, 1, rebuilt).length === 0) {
              return {
                fine: `${repair.rebuilt.length} block(s) of the commits after seq ${repair.durableThrough} were lost before blocks.db synced them (a power cut); cairn run rebuilds them from cairn.db when it starts`
              }
            }
            return `${problem}, not only of the commits after seq ${repair.durableThrough} that a start rebuilds from cairn.db`
          },
          'restore blocks.db and cairn.db from the same backup; peers that hold this outbox can serve it back'
        )
        await add(
          'synced trees',
          async () => {
            const broken = await readTrees(
              b,
              // The own tree is the check above's.
              () => d.producers.syncedRoots().filter((r) => r.producer !== self),
              (roots) => roots.filter((r) => missingUnder(b, r.root, 1).length > 0).map((r) => r.producer),
              (broken) => broken.length === 0
            )
            return broken.length === 0 ? undefined : `blocks missing under the synced trees of ${broken.join(', ')}`
          },
          "harmless for this node's events table; it cannot serve those trees to others until the producers publish again"
        )
      }
      db?.close()
      blocks?.db.close()
    }
    const lock = lockState(dir)
    const healthy = checks.every((c) => c.ok)
    if (values.json === true) {
      out(JSON.stringify({ healthy, lock, checks }))
    } else {
      for (const c of checks) out(`${c.ok ? 'ok  ' : c.skipped ? 'skip' : 'FAIL'}  ${c.check.padEnd(16)} ${c.detail}${c.fix != null && !c.ok ? `\n      → ${c.fix}` : ''}`)
      out(`      lock             ${lock}`)
      out(healthy ? 'healthy' : 'problems found: see the lines marked FAIL')
    }
    return healthy ? 0 : 1
  }
})
