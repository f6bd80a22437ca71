import { describe, expect, test } from 'bun:test'
import { testPlugin } from '../../src/plugins/testkit.ts'
import { definePlugin, upcaster, v } from '../../src/plugins/mod.ts'

/** A repository object over ctx.db, made once at the first apply and kept: a pattern that was legitimate. */
class Repo {
  constructor(private readonly db: { run(sql: string, params?: readonly (string | number)[]): unknown }) {}
  add(id: string): void {
    this.db.run('INSERT INTO notes (id) VALUES (?)', [id])
  }
}

describe("apply's ctx.db and what runs inside apply", () => {
  test("a handle kept from an earlier apply works inside a later apply (part of that event's transaction)", async () => {
    let repo: Repo | undefined
    const plugin = definePlugin({
      name: 'kept',
      handles: {
        'test.note': {
          version: 1,
          payload: v.object({ id: v.string() }),
          apply(event, { db }) {
            repo ??= new Repo(db)
            repo.add(event.payload.id)
            if (event.payload.id === 'undo') throw new Error('undone')
          }
        }
      },
      migrations: ['CREATE TABLE notes (id TEXT PRIMARY KEY)']
    })
    await using t = await testPlugin(plugin, { maxAttempts: 1 })
    await t.apply([
      { type: 'test.note', payload: { id: 'a' } },
      { type: 'test.note', payload: { id: 'b' } },
      { type: 'test.note', payload: { id: 'undo' } }
    ])
    expect({ notes: t.all('SELECT id FROM notes ORDER BY id'), dead: t.deadLetters().map((d) => d.error) }).toEqual({ notes: [{ id: 'a' }, { id: 'b' }], dead: ['undone'] })
  })

  test('a kept handle is still refused outside any apply (after an await)', async () => {
    let kept: { run(sql: string, params?: readonly string[]): unknown } | undefined
    const plugin = definePlugin({
      name: 'later',
      handles: {
        'test.note': {
          version: 1,
          payload: v.object({ id: v.string() }),
          apply(event, { db }) {
            kept = db
            db.run('INSERT INTO notes (id) VALUES (?)', [event.payload.id])
          }
        }
      },
      migrations: ['CREATE TABLE notes (id TEXT PRIMARY KEY)']
    })
    await using t = await testPlugin(plugin)
    await t.apply([{ type: 'test.note', payload: { id: 'a' } }])
    expect(() => kept?.run('INSERT INTO notes (id) VALUES (?)', ['outside'])).toThrow('ctx.db was used after apply returned')
    expect(t.all('SELECT id FROM notes ORDER BY id')).toEqual([{ id: 'a' }])
  })

  test('an upcaster returning a Promise is dead-lettered at once, naming the upcaster (its payload never reaches apply)', async () => {
    const plugin = definePlugin({
      name: 'up',
      handles: {
        'test.note': {
          version: 2,
          payload: v.unknown(),
          // A plain function returning a Promise (a transpiled async one): the load cannot tell.
          upcast: { 1: upcaster(v.object({ id: v.string() }), (old) => Promise.resolve(old) as unknown) },
          apply(event, { db }) {
            db.run('INSERT INTO notes (id) VALUES (?)', [String((event.payload as { id?: unknown }).id)])
          }
        }
      },
      migrations: ['CREATE TABLE notes (id TEXT PRIMARY KEY)']
    })
    await using t = await testPlugin(plugin)
    await t.apply([{ type: 'test.note', version: 1, payload: { id: 'a' } }])
    expect({ notes: t.all('SELECT id FROM notes'), dead: t.deadLetters().map((d) => [d.error, d.attempts]) }).toEqual({
      notes: [],
      dead: [['the upcaster of test.note v1 returned a Promise: upcasters must be synchronous', 1]]
    })
  })

  test('keys returning a Promise is dead-lettered at once, naming keys', async () => {
    const plugin = definePlugin({
      name: 'keyed',
      handles: {
        'test.note': {
          version: 1,
          payload: v.object({ id: v.string() }),
          keys: (p) => Promise.resolve([p.id]) as unknown as string[],
          apply(event, { db }) {
            db.run('INSERT INTO notes (id) VALUES (?)', [event.payload.id])
          }
        }
      },
      migrations: ['CREATE TABLE notes (id TEXT PRIMARY KEY)']
    })
    await using t = await testPlugin(plugin)
    await t.apply([{ type: 'test.note', payload: { id: 'a' } }])
    expect({ notes: t.all('SELECT id FROM notes'), dead: t.deadLetters().map((d) => [d.error, d.attempts]), retrying: t.retrying() }).toEqual({
      notes: [],
      dead: [['keys() returned a Promise: keys must be synchronous (a pure function of the payload)', 1]],
      retrying: 0
    })
  })
})
