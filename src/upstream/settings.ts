/**
 * The upstream's settings: which API (legacy fuseapi/face or API 3.0), where,
 * and with which credentials. The clients take their types from here;
 * src/config/upstream.ts resolves them from the environment.
 */
export interface LegacyCredentials {
  appId: string
  uin: string
  secretId: string
  secretKey: string
}

export interface V3Credentials {
  secretId: string
  secretKey: string
  /** Temporary credentials only. */
  sessionToken?: string
}

export type V3Action = 'FuseFace' | 'FaceFusion'
export type V3Version = '2022-09-27' | '2018-12-01'

interface V3Call { provider: 'v3', region: string, action: V3Action, version: V3Version }

/**
 * Where and how the upstream is called. `mode` says whether it is Tencent or the
 * emulator, which stands in for it when no credentials are set.
 */
export type UpstreamSettings =
  | { provider: 'legacy', mode: 'tencent' | 'emulator', url: string, credentials: LegacyCredentials }
  | V3Call & { mode: 'tencent' | 'emulator', url: string, credentials: V3Credentials }

/**
 * No credentials are set: the emulator answers, and these settings are not
 * complete until it is known where and with which credentials. `url` is the
 * one configured (an emulator running elsewhere), if any.
 */
export type UpstreamWithoutCredentials =
  | { provider: 'legacy', mode: 'emulator', url: string | undefined, credentials: undefined }
  | V3Call & { mode: 'emulator', url: string | undefined, credentials: undefined }

export type ResolvedUpstream = UpstreamSettings | UpstreamWithoutCredentials

/** Whether the settings are complete: a URL and credentials to sign with. */
export function isComplete (upstream: ResolvedUpstream): upstream is UpstreamSettings {
  return upstream.credentials !== undefined && upstream.url !== undefined
}
