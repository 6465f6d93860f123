/**
 * The emulator's one account. These are development credentials, published on
 * purpose: the service signs with them when no Tencent credentials are set, so
 * the whole signed path runs even without an account. They open nothing real.
 */
export const EMULATOR_ACCOUNT = {
  credentials: {
    appId: '1250000000',
    uin: '100000000001',
    secretId: 'emulator-dev-secret-id',
    secretKey: 'emulator-dev-secret-key-not-a-secret'
  }
} as const

/**
 * A temporary credential (as STS issues them) for API 3.0: its SecretId and
 * SecretKey sign as usual, and the request must also carry this session token
 * in X-TC-Token, which is how a client's token handling gets exercised.
 */
export const EMULATOR_TEMPORARY_CREDENTIAL = {
  secretId: 'emulator-temp-secret-id',
  secretKey: 'emulator-temp-secret-key-not-a-secret',
  sessionToken: 'emulator-session-token'
} as const

export interface Api3Key {
  secretKey: string
  /** Set for temporary credentials: X-TC-Token must carry exactly this. */
  sessionToken?: string
}

/** The keys API 3.0 accepts: the permanent account's (no token) and the temporary credential (token required). */
export function api3KeyFor (secretId: string): Api3Key | undefined {
  if (secretId === EMULATOR_ACCOUNT.credentials.secretId) return { secretKey: EMULATOR_ACCOUNT.credentials.secretKey }
  if (secretId === EMULATOR_TEMPORARY_CREDENTIAL.secretId) {
    return { secretKey: EMULATOR_TEMPORARY_CREDENTIAL.secretKey, sessionToken: EMULATOR_TEMPORARY_CREDENTIAL.sessionToken }
  }
  return undefined
}
