/** cairn's version; build.ts and tests read it from package.json to check they agree. */
export const VERSION = '0.1.0'
