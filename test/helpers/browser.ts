import { existsSync } from 'node:fs'
import { chromium, type Browser } from 'playwright-core'

/** Debian's chromium package: Playwright's own browser builds are not downloadable here (.ci/run installs it). */
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium'

/**
 * Starts headless Chromium. `hostMap` names host names the browser resolves to 127.0.0.1 (a DNS-rebinding page).
 *
 * @throws when the chromium package is missing
 */
export async function launchChromium(options: { hostMap?: string[] } = {}): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`)
  const args = ['--no-sandbox', '--disable-dev-shm-usage']
  if (options.hostMap != null && options.hostMap.length > 0) args.push(`--host-resolver-rules=${options.hostMap.map((h) => `MAP ${h} 127.0.0.1`).join(', ')}`)
  return await chromium.launch({ executablePath: CHROMIUM, args, headless: true })
}
