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
