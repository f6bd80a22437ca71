import type { Hono } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import type { PublishResult } from '../model/publishRequest.ts'
import { errorResponse } from './errors.ts'
import { jsonBody, readJson } from './mediaType.ts'
import { readQuery } from './query.ts'
import { NoQuerySchema } from './schemas.ts'

/** What the members routes need from the node (src/members/membership.ts). */
export interface MembersDeps {
  /** the membership as `cairn members list --json` prints it */
  list: () => unknown
  /** adds a member or changes its role or name; the body is `{peer_id, name?, role?}` */
  add: (body: unknown) => Promise<{ change: unknown; result: PublishResult }>
  /** removes a member */
  remove: (peer: string) => Promise<{ change: unknown; result: PublishResult }>
}

/** A change request is a peer id, a role and a name: a few hundred bytes. */
const MAX_CHANGE_BODY = 4096

/**
 * Mounts `/v1/members` on the loopback endpoint (behind its bearer token): `GET` lists the members,
 * `POST` adds one (201 with the signed change), `DELETE /v1/members/:peer_id` removes one. A node that is
 * not an owner answers a change 403 (NotOwnerError), a body not declared as JSON 415 (as the other JSON
 * routes), a bad body or query 400 (ValidationError), a body too large 413 with `limits` (the endpoint's,
 * as every 413 carries them), and a change this node must not or cannot publish 409 or 503, as any publish.
 */
export function mountMembers(app: Hono, deps: MembersDeps, limits: Record<string, unknown>): void {
  app.get('/v1/members', (c) => {
    readQuery(c.req.url, NoQuerySchema, [])
    return c.json(deps.list() as object)
  })
  app.post(
    '/v1/members',
    jsonBody,
    bodyLimit({ maxSize: MAX_CHANGE_BODY, onError: () => errorResponse(413, 'too_large', `Payload too large: a membership change is at most ${MAX_CHANGE_BODY} bytes`, { extra: { limits } }) }),
    async (c) => {
      const { change, result } = await deps.add(await readJson(c))
      return c.json({ change, ...result }, 201)
    }
  )
  app.delete('/v1/members/:peer_id', async (c) => {
    const { change, result } = await deps.remove(c.req.param('peer_id'))
    return c.json({ change, ...result })
  })
}
