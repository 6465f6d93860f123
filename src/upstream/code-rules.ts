import { fusionError, type ErrorCode } from '../errors.js'

/**
 * What one upstream failure code means for us, in both APIs' tables
 * (legacy `ret`, API 3.0 `Response.Error.Code`):
 *
 * - `code`: our stable error code (its HTTP status is in errors.ts).
 * - `retryable`: the same request may succeed later.
 * - `billed`: the upstream counts the call against the quota even though it failed.
 * - `message`: a public message more precise than the code's, when the upstream code says more than ours (which of
 *   the activity or the template is unknown).
 */
export interface UpstreamCodeRule {
  code: ErrorCode
  meaning: string
  retryable: boolean
  billed: boolean
  message?: string
}

/** The activity (project_id) is unknown; the code's own message is about the template (model_id). */
export const NO_SUCH_ACTIVITY = 'No such activity (project_id) for this account.'

export const rule = (code: ErrorCode, meaning: string, retryable = false, billed = false): UpstreamCodeRule =>
  ({ code, meaning, retryable, billed })

/**
 * The error for an upstream failure. Frequency control is never retried here
 * (pacing is the budget's job) and neither is a billed answer.
 */
export function failWithRule (found: UpstreamCodeRule, upstreamCode: string, retryAfterSeconds: number): never {
  const frequencyControl = found.code === 'FUSION_RATE_LIMITED'
  throw fusionError(found.code, {
    ...(found.message !== undefined ? { message: found.message } : {}),
    upstreamCode,
    retryable: found.retryable && !found.billed && !frequencyControl,
    ...(frequencyControl ? { retryAfterSeconds } : {})
  })
}
