/**
 * Layer checks that dependency-cruiser cannot make, because they are about what a file says rather than what it imports:
 *
 * - SQL lives in src/store/ only: no string or template literal in any other src/ file starts with an SQL statement.
 *   The one exception is the SQLite driver adapter in src/runtime/, which may issue transaction control and pragmas
 *   (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE, PRAGMA) but no query or schema statement.
 *   Comments (such as an `@example` in a doc comment) are not looked at; neither is prose that merely mentions SQL,
 *   such as a help text `cairn sql "SELECT …"`, since only literals that begin with a statement count.
 * - Only src/runtime/ branches on the runtime or touches its globals: `typeof Bun`, `Bun.*`, `Deno.*`, `globalThis.Bun`,
 *   `'Deno' in globalThis`, `process.versions.bun`, `runtimeName()`. Checked in src/, mod.ts and plugins/.
 *
 * Usage: bun scripts/lint-sql.ts   (exits 1 and lists file:line for each finding)
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import ts from 'typescript'

const root = join(import.meta.dirname, '..')

/** Literals that begin (after whitespace or an opening parenthesis) with one of these are SQL statements. */
const SQL_STATEMENT =
  /^[\s(]*(SELECT\b|INSERT\s+(INTO|OR\s+\w+\s+INTO)\b|REPLACE\s+INTO\b|UPDATE\s+\w+\s+SET\b|DELETE\s+FROM\b|(CREATE|DROP)\s+(TABLE|(UNIQUE\s+)?INDEX|VIEW|TRIGGER|VIRTUAL\s+TABLE)\b|ALTER\s+TABLE\b|WITH\s+(RECURSIVE\s+)?\w+\s+AS\s*\(|VACUUM\s*;?\s*$)/

/**
 * Transaction control and pragmas. Outside src/store/ they are SQL like any other, except in the SQLite driver adapter
 * (src/runtime/), whose transaction() and open() issue them on behalf of the store.
 */
const SQL_CONTROL = /^[\s(]*(PRAGMA\s+\w|BEGIN(\s+(IMMEDIATE|EXCLUSIVE|DEFERRED))?\s*;?\s*$|(COMMIT|ROLLBACK|END)\s*;?\s*$|SAVEPOINT\s|RELEASE\s+(SAVEPOINT\s+)?(\w|$)|ROLLBACK\s+TO\s)/

const RUNTIME_GLOBALS = new Set(['Bun', 'Deno'])

interface Finding {
  file: string
  line: number
  what: string
}

function tsFiles(dir: string): string[] {
  return readdirSync(join(root, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join(dir, f))
    .sort()
}

function excerpt(text: string): string {
  const one = text.replace(/\s+/g, ' ').trim()
  return one.length > 80 ? `${one.slice(0, 80)}…` : one
}

function check(file: string, sql: 'all' | 'statements' | 'none', runtime: boolean, out: Finding[]): void {
  const source = ts.createSourceFile(file, readFileSync(join(root, file), 'utf8'), ts.ScriptTarget.Latest, true)
  const report = (node: ts.Node, what: string): void => {
    out.push({ file, line: source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1, what })
  }
  const visit = (node: ts.Node): void => {
    if (sql !== 'none') {
      // A template literal counts once, by its head: `SELECT * FROM t WHERE ${x}`.
      const text = ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node) ? node.text : ts.isTemplateExpression(node) ? node.head.text : null
      if (text != null && (SQL_STATEMENT.test(text) || (sql === 'all' && SQL_CONTROL.test(text)))) report(node, `SQL outside src/store/: ${excerpt(text)}`)
    }
    if (runtime) {
      if (ts.isTypeOfExpression(node) && ts.isIdentifier(node.expression) && RUNTIME_GLOBALS.has(node.expression.text)) {
        report(node, `branches on the runtime outside src/runtime/: ${node.getText(source)}`)
      } else if (ts.isPropertyAccessExpression(node) && ts.isIdentifier(node.expression)) {
        const [object, name] = [node.expression.text, node.name.text]
        if (RUNTIME_GLOBALS.has(object)) report(node, `uses a runtime global outside src/runtime/: ${node.getText(source)}`)
        if (object === 'globalThis' && RUNTIME_GLOBALS.has(name)) report(node, `branches on the runtime outside src/runtime/: ${node.getText(source)}`)
      } else if (ts.isElementAccessExpression(node) && ts.isIdentifier(node.expression) && node.expression.text === 'globalThis') {
        const arg = node.argumentExpression
        if (ts.isStringLiteralLike(arg) && RUNTIME_GLOBALS.has(arg.text)) report(node, `branches on the runtime outside src/runtime/: ${node.getText(source)}`)
      } else if (ts.isBinaryExpression(node) && node.operatorToken.kind === ts.SyntaxKind.InKeyword && ts.isStringLiteralLike(node.left) && RUNTIME_GLOBALS.has(node.left.text)) {
        report(node, `branches on the runtime outside src/runtime/: ${node.getText(source)}`)
      } else if (ts.isCallExpression(node)) {
        const callee = node.expression
        const name = ts.isIdentifier(callee) ? callee.text : ts.isPropertyAccessExpression(callee) ? callee.name.text : ''
        if (name === 'runtimeName') report(node, `branches on the runtime outside src/runtime/: ${excerpt(node.getText(source))}`)
      }
      // process.versions.bun / process.versions.deno
      if (
        ts.isPropertyAccessExpression(node) &&
        ['bun', 'deno'].includes(node.name.text) &&
        ts.isPropertyAccessExpression(node.expression) &&
        node.expression.name.text === 'versions' &&
        ts.isIdentifier(node.expression.expression) &&
        node.expression.expression.text === 'process'
      ) {
        report(node, `branches on the runtime outside src/runtime/: ${node.getText(source)}`)
      }
    }
    ts.forEachChild(node, visit)
  }
  visit(source)
}

const findings: Finding[] = []
const shipped = [...tsFiles('src'), 'mod.ts', ...tsFiles('plugins')]
for (const file of shipped) {
  const sql = !file.startsWith('src/') || file.startsWith('src/store/') ? 'none' : file.startsWith('src/runtime/') ? 'statements' : 'all'
  const runtime = !file.startsWith('src/runtime/')
  if (sql !== 'none' || runtime) check(file, sql, runtime, findings)
}

for (const f of findings) console.error(`${relative(root, join(root, f.file))}:${f.line}: ${f.what}`)
if (findings.length > 0) {
  const files = new Set(findings.map((f) => f.file))
  console.error(`lint-sql: ${findings.length} finding(s) in ${files.size} file(s)`)
  process.exit(1)
}
console.log('lint-sql: no SQL outside src/store/, no runtime branching outside src/runtime/')
