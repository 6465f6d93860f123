import type { ImageLimits } from './provider.js'
import type { ResolvedUpstream, V3Version } from './settings.js'

/**
 * What each upstream API accepts as a photo, and what the service sends it:
 * the longest side set by IMAGE_MAX_SIDE, never above the API's own limit.
 */

/**
 * The legacy API's photo limits: "≤ 500 KB, ≤ 1080×1080". Kept under 500 000
 * bytes, the stricter reading of "500k". Below 64 px on the short side no face is found.
 */
export const LEGACY_IMAGE_LIMITS: ImageLimits = { maxSide: 1080, maxBytes: 500_000, minShortSide: 64 }

/**
 * FuseFace 2022-09-27: sides over 64 and under 4096 px (so 65…4095), base64 ≤ 5 MB (kept
 * under 5 000 000 characters, the stricter reading). The 2018-12-01 actions
 * documented 1080×1080 and answer `ImageSizeExceedFiveHundredKB` past 500 KB of
 * base64, so they get the legacy-sized budget.
 */
export const V3_IMAGE_LIMITS: Record<V3Version, ImageLimits> = {
  '2022-09-27': { maxSide: 4095, maxBytes: 3_750_000, minShortSide: 65 },
  '2018-12-01': { maxSide: 1080, maxBytes: 375_000, minShortSide: 65 }
}

/** What the configured API accepts. */
export function apiImageLimits (upstream: ResolvedUpstream): ImageLimits {
  return upstream.provider === 'v3' ? V3_IMAGE_LIMITS[upstream.version] : LEGACY_IMAGE_LIMITS
}

/** What the service sends: the API's limits with the longest side IMAGE_MAX_SIDE (checked at start to be within them). */
export function sentImageLimits (upstream: ResolvedUpstream, maxSide: number): ImageLimits {
  const api = apiImageLimits(upstream)
  return { ...api, maxSide: Math.min(maxSide, api.maxSide) }
}
