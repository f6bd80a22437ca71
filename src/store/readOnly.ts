import { openDatabase, type SqlDatabase } from '../runtime/sqlite.ts'
import { ValidationError } from '../errors.ts'

/** The statements an operator's query may start with: reads only. ATTACH, DETACH and VACUUM touch files. */
const READ_STATEMENT = /^(SELECT|WITH|VALUES|EXPLAIN|PRAGMA)\b/i

/** @returns `sql` without the comments and blanks before its first keyword */
function leadingKeywordText(sql: string): string {
  let rest = sql
  for (;;) {
    const trimmed = rest.replace(/^\s+/, '')
    if (trimmed.startsWith('--')) rest = trimmed.slice(trimmed.indexOf('\n') < 0 ? trimmed.length : trimmed.indexOf('\n'))
    else if (trimmed.startsWith('/*')) rest = trimmed.slice(trimmed.indexOf('*/') < 0 ? trimmed.length : trimmed.indexOf('*/') + 2)
    else return trimmed
  }
}

/**
 * Refuses, before anything runs, a query that is not one read-only statement: its first keyword must be
 * a read (SELECT, WITH, VALUES, EXPLAIN, PRAGMA) and SQLite, compiling it, must call it read-only. So
 * VACUUM INTO, ATTACH and DETACH, which write or open files even on a read-only connection, never run.
 *
 * @throws ValidationError naming what was refused
 */
export function assertReadQuery(db: SqlDatabase, sql: string): void {
  const text = leadingKeywordText(sql)
  if (!READ_STATEMENT.test(text)) {
    throw new ValidationError(`Refused: cairn sql runs one read-only statement (SELECT, WITH, VALUES, EXPLAIN or PRAGMA), not ${text.split(/\s/)[0] || 'an empty query'}`)
  }
  // A tail after the first statement would never run (one statement is compiled), so it is refused too.
  if (/;\s*\S/.test(text.replace(/'(?:[^']|'')*'|"(?:[^"]|"")*"/g, "''").replace(/--[^\n]*|\/\*[\s\S]*?\*\//g, ''))) {
    throw new ValidationError('Refused: cairn sql runs one statement at a time; remove what follows the first ;')
  }
  if (db.statementReadonly(sql) === false) throw new ValidationError('Refused: cairn sql is read-only, and SQLite says this statement writes')
}

/**
 * Opens the database at `path` read-only, with `query_only` on as well, neither creating nor migrating it (on a
 * read-only file system too: see openDatabase).
 *
 * @throws Error when the file cannot be opened or is not a database
 */
export async function openQueryOnly(path: string): Promise<SqlDatabase> {
  const db = await openDatabase(path, { readonly: true })
  try {
    db.exec('PRAGMA query_only = ON')
  } catch (err) {
    db.close()
    throw err
  }
  return db
}

/** The node's database opened read-only, for the operator's own queries (`cairn sql`): writes fail. */
export class ReadOnlyDatabase {
  private readonly db: SqlDatabase

  private constructor(db: SqlDatabase) {
    this.db = db
  }

  /** Opens the database at `path` read-only, with `query_only` on as well. */
  static async open(path: string): Promise<ReadOnlyDatabase> {
    return new ReadOnlyDatabase(await openQueryOnly(path))
  }

  /**
   * @returns the rows of the operator's `sql`
   * @throws ValidationError for anything but one read-only statement, before it runs; Error from SQLite: a syntax error
   */
  query(sql: string): Array<Record<string, unknown>> {
    assertReadQuery(this.db, sql)
    return this.db.all(sql)
  }

  close(): void {
    this.db.close()
  }
}
