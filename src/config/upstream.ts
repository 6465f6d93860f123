import type { RawConfig } from './schema.js'
import { ConfigError } from './error.js'
import type { ResolvedUpstream } from '../upstream/settings.js'

/**
 * Which upstream the environment names: the API, where it is, and the
 * credentials to sign with (the types are the clients', in
 * src/upstream/settings.ts).
 */

export const DEFAULT_TENCENT_LEGACY_URL = 'https://aiconsole.cloud.tencent.com/fuseapi/face'
export const DEFAULT_TENCENT_V3_URL = 'https://facefusion.tencentcloudapi.com'

/** The credentials each API signs with: the variables that, all set, take the service off the emulator. */
export const CREDENTIAL_VARIABLES = ['TENCENT_APPID', 'TENCENT_UIN', 'TENCENT_SECRET_ID', 'TENCENT_SECRET_KEY'] as const
export const V3_CREDENTIAL_VARIABLES = ['TENCENT_SECRET_ID', 'TENCENT_SECRET_KEY'] as const

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
