import { fusionError, type FusionError } from '../errors.js'
import type { Base64Refusal } from './base64-image.js'

/**
 * The 413s of the upload limit (MAX_UPLOAD_BYTES) say the limit, in MiB as the configuration's documentation words
 * it, so a user knows how small a photo must be without asking the operator.
 */

const MIB = 1024 * 1024

/** `10 MiB`; a limit that is no whole number of MiB gets its bytes too: `0.29 MiB (300000 bytes)`. */
export function formatLimit (bytes: number): string {
  if (bytes % MIB === 0) return `${bytes / MIB} MiB`
  return `${Number((bytes / MIB).toFixed(2))} MiB (${bytes} bytes)`
}

export function fileTooLarge (maxImageBytes: number): FusionError {
  return fusionError('FUSION_FILE_TOO_LARGE', {
    message: `The photo is larger than the upload limit of ${formatLimit(maxImageBytes)}: send a smaller photo.`
  })
}

export function bodyTooLarge (maxImageBytes: number): FusionError {
  // The body carries the photo as base64, a third larger than its bytes.
  const base64 = Number((maxImageBytes * 4 / 3 / MIB).toFixed(2))
  return fusionError('FUSION_BODY_TOO_LARGE', {
    message: `The request body is larger than the upload limit: the photo may be at most ${formatLimit(maxImageBytes)}, ` +
      `about ${base64} MiB as base64.`
  })
}

/** A base64 photo's refusal, with the limit when it is the size. */
export function base64Refusal (code: Base64Refusal, maxImageBytes: number): FusionError {
  return code === 'FUSION_FILE_TOO_LARGE' ? fileTooLarge(maxImageBytes) : fusionError(code)
}
