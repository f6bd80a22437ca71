/** Where an event file lives in its producer's outbox: `<yyyy-mm-dd>/<hh>/<seq, 12 digits>-<event_id>.json`. */
export interface FilePlace {
  day: string
  hour: string
  name: string
}

const NAME = /^(\d{12})-([0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})\.json$/
const DAY = /^\d{4}-\d{2}-\d{2}$/
const HOUR = /^([01]\d|2[0-3])$/

/** @returns the UTC bucket and file name of an event committed at `at` */
export function filePlace(seq: number, eventId: string, at: Date): FilePlace {
  const iso = at.toISOString()
  return { day: iso.slice(0, 10), hour: iso.slice(11, 13), name: fileName(seq, eventId) }
}

/** @returns the file name of event `seq` */
export function fileName(seq: number, eventId: string): string {
  return `${String(seq).padStart(12, '0')}-${eventId}.json`
}

/** @returns seq and event_id from a file name, or undefined when it does not follow the layout */
export function parseFileName(name: string): { seq: number; eventId: string } | undefined {
  const m = NAME.exec(name)
  if (m == null) return undefined
  const seq = Number(m[1])
  return seq >= 1 ? { seq, eventId: m[2] } : undefined
}

/** @returns whether `name` is a day bucket (`2026-11-22`) */
export const isDayName = (name: string): boolean => DAY.test(name)
/** @returns whether `name` is an hour bucket (`00`…`23`) */
export const isHourName = (name: string): boolean => HOUR.test(name)
