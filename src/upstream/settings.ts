import type { RawConfig } from '../config/schema.js'
import { ConfigError } from '../config/error.js'

/**
 * The upstream's settings: which API (legacy fuseapi/face or API 3.0), where,
 * and with which credentials, resolved from the environment. The clients take
 * their types from here.
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

export const DEFAULT_TENCENT_LEGACY_URL = 'https://aiconsole.cloud.tencent.com/fuseapi/face'
export const DEFAULT_TENCENT_V3_URL = 'https://facefusion.tencentcloudapi.com'

const CREDENTIAL_VARIABLES = ['TENCENT_APPID', 'TENCENT_UIN', 'TENCENT_SECRET_ID', 'TENCENT_SECRET_KEY'] as const
const V3_CREDENTIAL_VARIABLES = ['TENCENT_SECRET_ID', 'TENCENT_SECRET_KEY'] as const

/** Whether the settings are complete: a URL and credentials to sign with. */
export function isComplete (upstream: ResolvedUpstream): upstream is UpstreamSettings {
  return upstream.credentials !== undefined && upstream.url !== undefined
}

/**
 * Which upstream the environment names, and how to reach it. Without
 * credentials the settings say so (`credentials: undefined`): the entry point
 * completes them before the app is built.
 */
export function resolveUpstream (raw: RawConfig): ResolvedUpstream {
  // Unset: whatever the other settings name. Legacy-only settings (appid, uin, its URL) keep legacy; API 3.0-only
  // ones (its URL, a session token), or a SecretId without appid and uin, mean API 3.0.
  const legacyOnly = raw.TENCENT_APPID !== undefined || raw.TENCENT_UIN !== undefined || raw.TENCENT_LEGACY_URL !== undefined
  const v3Only = raw.TENCENT_V3_URL !== undefined || raw.TENCENT_SESSION_TOKEN !== undefined || raw.TENCENT_SECRET_ID !== undefined
  const provider = raw.FUSION_PROVIDER ?? (!legacyOnly && v3Only ? 'v3' : 'legacy')
  return provider === 'v3' ? resolveV3(raw) : resolveLegacy(raw)
}

function resolveLegacy (raw: RawConfig): ResolvedUpstream {
  if (raw.TENCENT_SESSION_TOKEN !== undefined) {
    throw new ConfigError(['TENCENT_SESSION_TOKEN: temporary credentials work with API 3.0 only (FUSION_PROVIDER=v3)'])
  }
  const present = CREDENTIAL_VARIABLES.filter((name) => raw[name] !== undefined)
  if (present.length === 0) {
    return { provider: 'legacy', mode: 'emulator', url: raw.TENCENT_LEGACY_URL, credentials: undefined }
  }
  if (present.length < CREDENTIAL_VARIABLES.length) {
    const missing = CREDENTIAL_VARIABLES.filter((name) => raw[name] === undefined)
    throw new ConfigError([
      `${missing.join(', ')}: must be set, because ${present.join(', ')} ${present.length === 1 ? 'is' : 'are'} set ` +
      '(set all four Tencent credentials for the legacy API, only TENCENT_SECRET_ID and TENCENT_SECRET_KEY with ' +
      'FUSION_PROVIDER=v3, or none to use the built-in emulator)'
    ])
  }
  return {
    provider: 'legacy',
    mode: 'tencent',
    url: raw.TENCENT_LEGACY_URL ?? DEFAULT_TENCENT_LEGACY_URL,
    credentials: {
      appId: raw.TENCENT_APPID!,
      uin: raw.TENCENT_UIN!,
      secretId: raw.TENCENT_SECRET_ID!,
      secretKey: raw.TENCENT_SECRET_KEY!
    }
  }
}

function resolveV3 (raw: RawConfig): ResolvedUpstream {
  const action = raw.FUSION_V3_ACTION
  const version = raw.FUSION_V3_VERSION ?? (action === 'FaceFusion' ? '2018-12-01' : '2022-09-27')
  if (action === 'FaceFusion' && version !== '2018-12-01') {
    throw new ConfigError(['FUSION_V3_VERSION: FaceFusion exists only in version 2018-12-01'])
  }
  const common = { provider: 'v3' as const, region: raw.TENCENT_REGION, action, version }
  const present = V3_CREDENTIAL_VARIABLES.filter((name) => raw[name] !== undefined)
  if (present.length === 0) {
    if (raw.TENCENT_SESSION_TOKEN !== undefined) {
      throw new ConfigError(['TENCENT_SECRET_ID, TENCENT_SECRET_KEY: must be set, because TENCENT_SESSION_TOKEN is set'])
    }
    return { ...common, mode: 'emulator', url: raw.TENCENT_V3_URL, credentials: undefined }
  }
  if (present.length < V3_CREDENTIAL_VARIABLES.length) {
    const missing = V3_CREDENTIAL_VARIABLES.filter((name) => raw[name] === undefined)
    throw new ConfigError([`${missing.join(', ')}: must be set, because ${present.join(', ')} is set (API 3.0 signs with both)`])
  }
  return {
    ...common,
    mode: 'tencent',
    url: raw.TENCENT_V3_URL ?? DEFAULT_TENCENT_V3_URL,
    credentials: {
      secretId: raw.TENCENT_SECRET_ID!,
      secretKey: raw.TENCENT_SECRET_KEY!,
      ...(raw.TENCENT_SESSION_TOKEN !== undefined ? { sessionToken: raw.TENCENT_SESSION_TOKEN } : {})
    }
  }
}
