import { describe, expect, test } from 'bun:test'
import { withApiNode } from '../helpers/forge.ts'
import { invite } from '../helpers/process.ts'

/** @returns the status and JSON body of one request to the node's API, with its token */
async function call(base: string, token: string, method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; body: any }> {
  const res = await fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers }, body })
  return { status: res.status, headers: res.headers, body: await res.json() }
}

describe('request bodies', () => {
  test('a JSON body may be declared application/json or any application/*+json type, as the OpenAPI says; anything else is 415 on every JSON route', async () => {
    await withApiNode({}, async (_node, base, token) => {
      expect((await call(base, token, 'POST', '/v1/events', JSON.stringify(invite(1)), { 'content-type': 'application/ld+json' })).status).toBe(201)
      expect((await call(base, token, 'POST', '/v1/events', JSON.stringify(invite(2)), { 'content-type': 'application/vnd.foo+json; charset=utf-8' })).status).toBe(201)
      for (const path of ['/v1/events', '/v1/snapshots', '/v1/members']) {
        const refused = await call(base, token, 'POST', path, 'x', { 'content-type': 'text/plain' })
        expect([path, refused.status, refused.body.error.code, refused.headers.get('accept-post')]).toEqual([path, 415, 'unsupported_media_type', 'application/json, application/*+json'])
        expect(refused.body.error.message).toContain('application/*+json')
      }
      const doc = (await (await fetch(`${base}/v1/openapi.json`)).json()) as { paths: Record<string, { post: { requestBody: { content: object } } }> }
      for (const path of ['/v1/events', '/v1/snapshots', '/v1/members']) {
        expect([path, Object.keys(doc.paths[path].post.requestBody.content)]).toEqual([path, ['application/json', 'application/*+json']])
      }
    })
  }, 60_000)
})
