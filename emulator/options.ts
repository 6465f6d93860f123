/**
 * The emulator's knobs, for both APIs (plugin.ts passes them to each).
 * Tests reach every error code through the material ids of shared/forced.ts (with `faults`),
 * and the frequency control through `qps`.
 */
export interface EmulatorOptions {
  /** How `ret` is written: the docs show both "0" and 0. Default 'string'. */
  retType?: 'string' | 'number'
  /** Where a base64 result goes: the 2018-11 example uses img_base64, older tables img_url. Default 'img_base64'. */
  base64Field?: 'img_base64' | 'img_url'
  /**
   * Requests per second allowed per activity and caller (appid on the legacy route, SecretId on
   * API 3.0's fusion actions); 0 turns frequency control off. Default 0.
   */
  qps?: number
  /**
   * Whether the fault-injection material ids of shared/forced.ts force their codes. Off by default: with it on,
   * any caller can make the upstream fail at will (and open the service's circuit breaker). Tests turn it on.
   */
  faults?: boolean
  /** Milliseconds; injectable for tests. */
  clock?: () => number
  /** How many results are kept for their URLs (oldest dropped first). Default 256. */
  maxStoredResults?: number
  /**
   * Sees every photo that passed the upstream's checks and is fused, as received: lets tests inspect what
   * was sent. (Of several FuseFace MergeInfos only the first is fused; the others are not passed here.)
   */
  onPhoto?: (photo: Buffer) => void
  /** Sees every `ret` the emulator answers with: lets tests count frequency-control rejections. */
  onAnswer?: (ret: number) => void
  /** Sees every API 3.0 request before any check, with the exact body bytes: lets tests compare signatures. */
  onV3Request?: (request: { headers: Record<string, string | string[] | undefined>, body: Buffer }) => void
  /** Sees every API 3.0 answer: `Response.Error.Code`, or 'OK' for success. */
  onV3Answer?: (code: string) => void
}
