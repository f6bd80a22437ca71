/**
 * The most characters kept of a text a member chose (a name in its tree, up to a block's 2 MiB, and the
 * messages that quote it) where it is stored or logged: an honest path or CID is about 60 characters.
 */
export const CLIP_TEXT = 512

/** @returns `s` cut to `max` characters (never between the two halves of a surrogate pair), saying how much went */
export function clip(s: string, max = CLIP_TEXT): string {
  if (s.length <= max) return s
  let end = max
  const last = s.charCodeAt(end - 1)
  if (last >= 0xd800 && last <= 0xdbff) end--
  return `${s.slice(0, end)}… (${s.length - end} more characters)`
}
