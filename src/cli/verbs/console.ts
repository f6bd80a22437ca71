import { spawn } from 'node:child_process'
import { defineVerb } from '../verb.ts'
import { SETTINGS } from '../../config/catalog.ts'
import { OPTIONS } from '../options.ts'
import { callNode, nodeAnswerError } from '../client.ts'

/** @returns the command that opens a URL in the desktop's browser, when this machine has a desktop */
function browserOpener(env: Record<string, string | undefined>): string | undefined {
  if (process.platform === 'darwin') return 'open'
  if (process.platform === 'win32') return undefined
  return env.DISPLAY != null || env.WAYLAND_DISPLAY != null ? 'xdg-open' : undefined
}

export const consoleVerb = defineVerb({
  name: 'console',
  summary: "print a one-time link that logs a browser into the running node's console (and open it where a browser exists)",
  usage: '[--data DIR] [--no-open]',
  settings: [SETTINGS.data, OPTIONS['no-open']],
  details:
    'The link works once, for ten minutes: it sets an HttpOnly, SameSite=Strict session cookie for this endpoint and redirects to the console at /. Sessions last twelve hours and end when the node stops. The console is served on the loopback endpoint only (see --http).',
  async run({ values, env, out, err }) {
    const dir = values.data as string
    const res = await callNode<{ url: string }>(dir, 'POST', '/console/login-links')
    if (res.status !== 200 || typeof res.body?.url !== 'string') throw nodeAnswerError(res, 'Cannot mint a console link')
    out(res.body.url)
    const opener = values['no-open'] === true ? undefined : browserOpener(env)
    if (opener != null) {
      const child = spawn(opener, [res.body.url], { detached: true, stdio: 'ignore' })
      child.on('error', (e) => {
        err(`cairn console: could not start ${opener} (${e.message}); open the link above yourself`)
      })
      child.unref()
    }
    return 0
  }
})
