import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { openDatabaseSync } from '../../src/runtime/sqlite.ts'
import { RebuildSwap } from '../../src/store/rebuildShadow.ts'
import { tempDir } from '../helpers/process.ts'

describe('RebuildSwap', () => {
  test('attaching a shadow detaches one an earlier swap left attached, so that a failed detach does not fail every later swap', () => {
    using tmp = tempDir()
    const db = openDatabaseSync(join(tmp.path, 'cairn.db'))
    try {
      const swap = new RebuildSwap(db)
      swap.attach(join(tmp.path, 'rebuild-a.db'))
      // as a swap whose detach threw leaves it
      swap.attach(join(tmp.path, 'rebuild-b.db'))
      const attached = db.all<{ name: string; file: string }>("SELECT name, file FROM pragma_database_list WHERE name = 'rebuild'")
      expect(attached.map((a) => a.file)).toEqual([join(tmp.path, 'rebuild-b.db')])
      swap.detach()
      expect(db.all("SELECT name FROM pragma_database_list WHERE name = 'rebuild'")).toEqual([])
    } finally {
      db.close()
    }
  })

  test('copied tables keep their rowids, whether SQLite transfers the records whole (same schema, an index) or they are copied row by row (a foreign key; no index)', () => {
    using tmp = tempDir()
    const schema = `CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
      CREATE TABLE plain (a TEXT NOT NULL, b TEXT, UNIQUE (a));
      CREATE TABLE child (a TEXT NOT NULL, p INTEGER NOT NULL REFERENCES parent (id), UNIQUE (a, p));
      CREATE TABLE bare (a TEXT NOT NULL, b TEXT);`
    const shadow = openDatabaseSync(join(tmp.path, 'rebuild-x.db'))
    const db = openDatabaseSync(join(tmp.path, 'cairn.db'))
    try {
      shadow.exec(schema)
      shadow.exec('PRAGMA foreign_keys = ON')
      for (let i = 1; i <= 50; i++) {
        shadow.run('INSERT INTO parent (id, name) VALUES (?, ?)', [i * 3, `p${i}`])
        shadow.run('INSERT INTO plain (a, b) VALUES (?, ?)', [`a${i}`, `b${i}`])
        shadow.run('INSERT INTO child (a, p) VALUES (?, ?)', [`c${i}`, i * 3])
        shadow.run('INSERT INTO bare (a, b) VALUES (?, ?)', [`d${i}`, `e${i}`])
      }
      // gaps of deleted rows, which a copy row by row into an empty table would close
      shadow.exec('DELETE FROM plain WHERE rowid % 7 = 0; DELETE FROM child WHERE rowid % 5 = 0; DELETE FROM bare WHERE rowid % 3 = 0')
      const rows = (d: typeof db, table: string, schemaName = 'main'): unknown[] => d.all(`SELECT rowid AS r, * FROM ${schemaName}.${table} ORDER BY rowid`)
      const expected = Object.fromEntries(['parent', 'plain', 'child', 'bare'].map((t) => [t, rows(shadow, t)]))
      db.exec(schema)
      db.exec('PRAGMA foreign_keys = ON')
      db.exec("INSERT INTO plain (a, b) VALUES ('seed', 'row')")
      const swap = new RebuildSwap(db)
      swap.attach(join(tmp.path, 'rebuild-x.db'))
      // Both ways are taken: SQLite transfers `plain` whole, not `child` (its foreign key is checked row by row), and
      // would transfer `bare` but give its rows new rowids (no index).
      const transfers = (t: string): boolean => db.opcodes(`INSERT INTO main.${t} SELECT * FROM rebuild.${t}`).includes('RowData')
      expect(transfers('plain')).toBe(true)
      expect(transfers('child')).toBe(false)
      expect(transfers('bare')).toBe(true)
      db.transaction(() => {
        swap.deferForeignKeys()
        // in the order the swap takes them (by name): the child before its parent
        swap.copyTables(['bare', 'child', 'parent', 'plain'])
      })
      swap.detach()
      for (const t of ['parent', 'plain', 'child', 'bare']) expect(rows(db, t)).toEqual(expected[t])
    } finally {
      db.close()
      shadow.close()
    }
  })

  test('a swap copies generated columns, an external-content FTS5 index after its content table, a cascading child of a seeded parent, and a table whose index only the shadow has', () => {
    using tmp = tempDir()
    const common = `CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
      CREATE VIRTUAL TABLE docs_fts USING fts5(body, content='docs', content_rowid='id');
      CREATE TABLE g (a INTEGER NOT NULL, v INTEGER GENERATED ALWAYS AS (a * 2) VIRTUAL, st INTEGER GENERATED ALWAYS AS (a * 3) STORED, b TEXT);
      CREATE INDEX g_v ON g (v);
      CREATE TABLE lists (id TEXT PRIMARY KEY, title TEXT);
      CREATE TABLE items (a TEXT NOT NULL, list TEXT NOT NULL REFERENCES lists (id) ON DELETE CASCADE);
      CREATE TABLE t (a TEXT, b TEXT);`
    const shadow = openDatabaseSync(join(tmp.path, 'rebuild-x.db'))
    const db = openDatabaseSync(join(tmp.path, 'cairn.db'))
    try {
      shadow.exec(`${common} CREATE INDEX t_a ON t (a); PRAGMA foreign_keys = ON`)
      for (let i = 1; i <= 30; i++) {
        shadow.run('INSERT INTO docs (id, body) VALUES (?, ?)', [i * 2, `word${i} common`])
        shadow.run('INSERT INTO docs_fts (rowid, body) VALUES (?, ?)', [i * 2, `word${i} common`])
        shadow.run('INSERT INTO g (a, b) VALUES (?, ?)', [i, `b${i}`])
        shadow.run('INSERT INTO lists (id, title) VALUES (?, ?)', [`l${i}`, `list ${i}`])
        shadow.run('INSERT INTO items (a, list) VALUES (?, ?)', [`i${i}`, `l${i}`])
        shadow.run('INSERT INTO t (a, b) VALUES (?, ?)', [`a${i}`, `b${i}`])
      }
      shadow.exec('DELETE FROM g WHERE rowid % 4 = 0; DELETE FROM items WHERE rowid % 3 = 0; DELETE FROM t WHERE rowid % 5 = 0')
      const tables = ['docs', 'docs_fts', 'g', 'items', 'lists', 't']
      const rows = (d: typeof db, table: string): unknown[] => d.all(`SELECT rowid AS r, * FROM main.${table} ORDER BY rowid`)
      const expected = Object.fromEntries(tables.map((t) => [t, rows(shadow, t)]))
      db.exec(`${common} PRAGMA foreign_keys = ON`)
      // seed rows the plugin's migrations left: a list the shadow has too, with an item; a document, indexed
      db.exec("INSERT INTO lists (id, title) VALUES ('l1', 'seed'); INSERT INTO items (a, list) VALUES ('seed', 'l1')")
      db.exec("INSERT INTO docs (id, body) VALUES (1, 'seeded text'); INSERT INTO docs_fts (rowid, body) VALUES (1, 'seeded text')")
      const swap = new RebuildSwap(db)
      swap.attach(join(tmp.path, 'rebuild-x.db'))
      db.transaction(() => {
        swap.deferForeignKeys()
        swap.copyTables(tables)
      })
      swap.detach()
      for (const t of tables) expect(rows(db, t)).toEqual(expected[t])
      expect(db.all("SELECT rowid FROM docs_fts WHERE docs_fts MATCH 'word7'")).toEqual([{ rowid: 14 }])
      db.exec("INSERT INTO docs_fts (docs_fts) VALUES ('integrity-check')")
      expect(db.all('PRAGMA main.integrity_check')).toEqual([{ integrity_check: 'ok' }])
    } finally {
      db.close()
      shadow.close()
    }
  })

  test('a swap copies an FTS4 external-content index seeded by the migrations, a table only the shadow has (its handlers made it) with its index and trigger, and a name that needs quoting; a read-only view of an index is not copied', () => {
    using tmp = tempDir()
    const common = `CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
      CREATE VIRTUAL TABLE docs_fts USING fts4(body, content='docs');
      CREATE VIRTUAL TABLE words USING fts5(body);
      CREATE VIRTUAL TABLE words_vocab USING fts5vocab(words, row);
      CREATE VIRTUAL TABLE langs USING fts4(body, languageid="lid");
      CREATE TABLE "my items" (a TEXT NOT NULL);`
    const shadow = openDatabaseSync(join(tmp.path, 'rebuild-x.db'))
    const db = openDatabaseSync(join(tmp.path, 'cairn.db'))
    try {
      shadow.exec(common)
      // what a handler made at run time
      shadow.exec('CREATE TABLE cache (k TEXT NOT NULL, v TEXT); CREATE UNIQUE INDEX cache_k ON cache (k); CREATE TABLE cache_log (k TEXT)')
      shadow.exec('CREATE TRIGGER cache_logged AFTER INSERT ON cache BEGIN INSERT INTO cache_log (k) VALUES (new.k); END')
      for (let i = 2; i <= 20; i++) {
        shadow.run('INSERT INTO docs (id, body) VALUES (?, ?)', [i, `term${i} shared`])
        shadow.run('INSERT INTO docs_fts (docid, body) VALUES (?, ?)', [i, `term${i} shared`])
        shadow.run('INSERT INTO words (body) VALUES (?)', [`w${i}`])
        shadow.run('INSERT INTO "my items" (a) VALUES (?)', [`m${i}`])
        shadow.run('INSERT INTO cache (k, v) VALUES (?, ?)', [`k${i}`, `v${i}`])
        shadow.run('INSERT INTO langs (docid, body, lid) VALUES (?, ?, ?)', [i * 10, `text${i}`, i % 3])
      }
      shadow.exec('DELETE FROM "my items" WHERE rowid % 4 = 0; DELETE FROM cache WHERE rowid % 3 = 0')
      db.exec(common)
      // seeded by the migrations, and indexed
      db.exec("INSERT INTO docs (id, body) VALUES (1, 'seeded text'); INSERT INTO docs_fts (docid, body) VALUES (1, 'seeded text')")
      const swap = new RebuildSwap(db)
      swap.attach(join(tmp.path, 'rebuild-x.db'))
      const copied = swap.shadowTables()
      expect(copied).toEqual(['cache', 'cache_log', 'docs', 'docs_fts', 'langs', 'my items', 'words'])
      db.transaction(() => {
        swap.deferForeignKeys()
        swap.copyTables(copied)
      })
      swap.detach()
      const rows = (d: typeof db, table: string): unknown[] => d.all(`SELECT rowid AS r, * FROM main."${table}" ORDER BY rowid`)
      for (const t of ['docs', 'docs_fts', 'my items', 'words', 'cache', 'cache_log']) expect(rows(db, t)).toEqual(rows(shadow, t))
      expect(db.all("SELECT docid FROM docs_fts WHERE docs_fts MATCH 'seeded'")).toEqual([])
      expect(db.all("SELECT docid FROM docs_fts WHERE docs_fts MATCH 'term7'")).toEqual([{ docid: 7 }])
      db.exec("INSERT INTO docs_fts (docs_fts) VALUES ('integrity-check')")
      expect(db.all('PRAGMA main.integrity_check')).toEqual([{ integrity_check: 'ok' }])
      // FTS4's languageid column is hidden from SELECT *: copied by name, and a search in language 2 finds its row
      const langs = (d: typeof db): unknown[] => d.all('SELECT docid, body, lid FROM langs ORDER BY docid')
      expect(langs(db)).toEqual(langs(shadow))
      expect(db.all("SELECT docid FROM langs WHERE langs MATCH 'text5' AND lid = 2")).toEqual([{ docid: 50 }])
      // the handler's table came with its index and its trigger
      expect(db.all("SELECT name FROM main.sqlite_master WHERE tbl_name = 'cache' AND type IN ('index', 'trigger') ORDER BY name")).toEqual([{ name: 'cache_k' }, { name: 'cache_logged' }])
      db.run("INSERT INTO cache (k, v) VALUES ('new', 'x')")
      expect(db.get("SELECT count(*) AS n FROM cache_log WHERE k = 'new'")).toEqual({ n: 1 })
    } finally {
      db.close()
      shadow.close()
    }
  })
})
