/** cairn's version; build.ts and tests read it from package.json to check they agree. */
export const VERSION = '0.1.0'

/** Replaced by build.ts (`bun build --define`) with the commit the binary was built from. */
declare const CAIRN_BUILD: string | undefined

/**
 * Which build of VERSION this is: the commit dist/cairn was built from (12 hex digits, `-dirty` when the
 * checkout had changes), `unknown` for a build outside a git checkout, `source` when run from the
 * TypeScript. Every build between two releases reports the same VERSION; this tells them apart.
 */
export const BUILD: string = typeof CAIRN_BUILD === 'string' ? CAIRN_BUILD : 'source'

/** @returns how a node of `version` and `build` (absent from older builds) names itself, as `cairn --version` prints it */
export function versionText(v: { version: string; build?: string }): string {
  return v.build != null ? `${v.version}+${v.build}` : v.version
}

/** How this cairn names itself: VERSION with its BUILD, as `cairn --version` prints it. */
export const VERSION_TEXT = versionText({ version: VERSION, build: BUILD })
