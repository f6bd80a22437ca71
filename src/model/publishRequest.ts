import * as v from 'valibot'
import { EventTypeSchema, UuidV7Schema } from './envelope.ts'

/** The body of `POST /v1/events` and what `cairn publish` sends. */
export const PublishRequestSchema = v.strictObject({
  type: EventTypeSchema,
  payload: v.unknown(),
  version: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1_000_000))),
  event_id: v.optional(UuidV7Schema),
  actor: v.optional(v.pipe(v.string(), v.maxLength(512))),
  correlation_id: v.optional(v.pipe(v.string(), v.maxLength(256))),
  causation_id: v.optional(v.pipe(v.string(), v.maxLength(256)))
})

export type PublishRequest = v.InferOutput<typeof PublishRequestSchema>

/** What a publish returns once it is durable. */
export interface PublishResult {
  event_id: string
  seq: number
  cid: string
}
