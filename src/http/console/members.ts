import { MemberChangeRefused } from '../../errors.ts'

/** One member as the Members page shows it. */
export interface MemberRow {
  peer_id: string
  name: string | null
  role?: string
  connected?: boolean
  self?: boolean
}

/** The membership as the Members page shows it (the shape of `GET /v1/members` where membership changes exist). */
export interface MembersView {
  /** 'changes': owners' signed changes govern; 'setting': the static members setting; 'open': every holder of the swarm key */
  source: 'changes' | 'setting' | 'open'
  self_is_owner: boolean
  members: MemberRow[]
  /** removed members (GET /v1/members lists them) */
  removed?: Array<{ peer_id: string; name: string | null; last_seq: number; removed_by: string; removed_at: string }>
  /** the owners' changes that took no effect, the last to arrive (GET /v1/members lists them), and how many in all */
  refused?: Array<{ event_id: string; producer: string; seq: number; reason: string; detail: string }>
  refused_total?: number
}

/** What the Members page reads and changes (see membersThroughApi). */
export interface ConsoleMembers {
  /** the membership, and whether it can be changed here (membership changes exist) */
  list: () => Promise<MembersView & { editable: boolean }>
  /** adds a member or changes its role or name (MemberChangeRefused) */
  add: (body: { peer_id: string; name?: string; role?: string }) => Promise<void>
  /** removes a member (MemberChangeRefused) */
  remove: (peer: string) => Promise<void>
}

/** @returns the message of an error body, in either of the endpoint's shapes (`{error: "…"}`, `{error: {message}}`) */
function errorMessage(body: unknown, status: number): string {
  const error = (body as { error?: unknown } | null)?.error
  if (typeof error === 'string') return error
  if (typeof (error as { message?: unknown } | undefined)?.message === 'string') return (error as { message: string }).message
  return `The node answered HTTP ${status}`
}

/**
 * The Members page's data through the endpoint's own `/v1/members` routes, where the node has them
 * (membership changes): listing, adding and removing go exactly where `cairn members` goes, with the API
 * token. Where the route is absent (404), the membership is the static setting: `fallback` lists it and a
 * change is refused with a message saying so.
 *
 * @param call sends a request to this endpoint in process, with the API token
 */
export function membersThroughApi(call: (path: string, init?: RequestInit) => Promise<Response>, fallback: () => MembersView): ConsoleMembers {
  const send = async (path: string, init?: RequestInit): Promise<{ status: number; body: unknown }> => {
    const res = await call(path, init)
    const text = await res.text()
    let body: unknown = text
    try {
      body = JSON.parse(text)
    } catch {}
    return { status: res.status, body }
  }
  const change = async (path: string, init: RequestInit): Promise<void> => {
    const r = await send(path, init)
    if (r.status === 404 && (await send('/v1/members')).status === 404) throw new MemberChangeRefused(400, STATIC)
    if (r.status >= 300) throw new MemberChangeRefused(r.status, errorMessage(r.body, r.status))
  }
  return {
    async list() {
      const r = await send('/v1/members')
      if (r.status === 404) return { ...fallback(), editable: false }
      if (r.status !== 200) throw new MemberChangeRefused(r.status, errorMessage(r.body, r.status))
      return { ...(r.body as MembersView), editable: true }
    },
    async add(body) {
      await change('/v1/members', { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } })
    },
    async remove(peer) {
      await change(`/v1/members/${encodeURIComponent(peer)}`, { method: 'DELETE' })
    }
  }
}

/** Why a change is refused where membership is the static setting. */
const STATIC = 'Membership is the static setting here: change the members list in config.json and restart.'
