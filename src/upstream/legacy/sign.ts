import { createHmac, randomInt } from 'node:crypto'

/**
 * The legacy "multi-use signature" (多次有效签名) of Tencent's image APIs:
 *
 *   original      = "a=<appid>&b=<bucket>&k=<SecretId>&e=<expiry>&t=<now>&r=<rand>&u=0&f="
 *   Authorization = base64( HMAC-SHA1(SecretKey, original) as 20 raw bytes ++ original )
 *
 * Field order follows the documented template. Standard base64, no line breaks,
 * no scheme prefix. See Tencent's 鉴权签名 (multi-use signature) document, 641/12409.
 */
export interface LegacySignatureInput {
  appId: string
  secretId: string
  secretKey: string
  /** Unix seconds. */
  now: number
  /** Unix seconds; must be later than `now`. */
  expiresAt: number
  /** Random unsigned decimal, at most 10 digits. */
  nonce: number
  /** Legacy COS bucket; empty for face fusion. */
  bucket?: string
  /** Present in the template as `u=0`; `undefined` omits the field (older variants). */
  u?: string
  /** File id; empty for a multi-use signature. */
  fileId?: string
}

export function buildOriginal (input: LegacySignatureInput): string {
  const fields = [
    `a=${input.appId}`,
    `b=${input.bucket ?? ''}`,
    `k=${input.secretId}`,
    `e=${input.expiresAt}`,
    `t=${input.now}`,
    `r=${input.nonce}`
  ]
  if (input.u !== undefined) fields.push(`u=${input.u}`)
  fields.push(`f=${input.fileId ?? ''}`)
  return fields.join('&')
}

export function signOriginal (original: string, secretKey: string): string {
  const mac = createHmac('sha1', secretKey).update(original, 'utf8').digest()
  return Buffer.concat([mac, Buffer.from(original, 'utf8')]).toString('base64')
}

export function signLegacy (input: LegacySignatureInput): string {
  return signOriginal(buildOriginal(input), input.secretKey)
}

/** A fresh signature for one upstream call. */
export function signLegacyNow (
  credentials: { appId: string, secretId: string, secretKey: string },
  ttlSeconds: number,
  clock: () => number = Date.now
): string {
  const now = Math.floor(clock() / 1000)
  return signLegacy({
    ...credentials,
    now,
    expiresAt: now + ttlSeconds,
    nonce: randomInt(1, 2 ** 31),
    u: '0'
  })
}
