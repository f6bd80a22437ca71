import { expect, test } from 'bun:test'
import { testPlugin } from '@cairn/plugin/test'
import plugin from './document-sharing.ts'

const shares = 'SELECT document_id, person, shared, role FROM document_shares ORDER BY document_id, person'

test('sharing and unsharing converge whatever the order, and nothing is applied twice', async () => {
  await using t = await testPlugin(plugin)
  const [shared, unshared] = await t.apply([
    { type: 'document.shared', payload: { document_id: 'd1', shared_with: ['Ann@Example.com', 'bob@example.com'], role: 'editor' } },
    { type: 'document.unshared', payload: { document_id: 'd1', with: 'bob@example.com' } },
    { type: 'document.shared', version: 1, payload: { document_id: 'd2', with: 'cy@example.com' } }
  ])
  expect(t.all(shares)).toEqual([
    { document_id: 'd1', person: 'ann@example.com', shared: 1, role: 'editor' },
    { document_id: 'd1', person: 'bob@example.com', shared: 0, role: null },
    { document_id: 'd2', person: 'cy@example.com', shared: 1, role: 'viewer' }
  ])
  expect(await t.redeliver()).toBe(0)

  await using reversed = await testPlugin(plugin)
  await reversed.apply([unshared, shared])
  expect(reversed.all(shares)).toEqual(t.all(shares).filter((r) => r.document_id === 'd1'))
})

test('a payload that fails the schema is dead-lettered at once, with the field named', async () => {
  await using t = await testPlugin(plugin)
  await t.apply({ type: 'document.shared', payload: { document_id: 'd1', shared_with: [] } })
  expect(t.deadLetters().map((d) => d.error)).toEqual(['payload of document.shared v2 is invalid: payload.shared_with: Expected at least one person'])
})
