import { createHmac, timingSafeEqual } from 'node:crypto'

/**
 * Server side of the legacy multi-use signature, as the upstream checks it:
 * base64-decode, split off the 20-byte HMAC-SHA1, verify it over the exact
 * remaining bytes with the key named by `k`, then read `key=value` pairs in
 * any order (official SDKs disagree on order and on which fields they send).
 */
export type SignatureVerdict =
  | { ok: true, appId: string, secretId: string, expiresAt: number, signedAt: number }
  | { ok: false, ret: -20001 | -20002 | -20003 | -7, reason: string }

const HMAC_LENGTH = 20

export function verifyLegacySignature (
  header: string | undefined,
  keyFor: (secretId: string) => string | undefined,
  nowSeconds: number
): SignatureVerdict {
  if (header === undefined || header.trim() === '') return { ok: false, ret: -20001, reason: 'Authorization is empty' }
  const value = header.trim()
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(value) || value.length % 4 !== 0) {
    return { ok: false, ret: -20002, reason: 'Authorization is not base64' }
  }
  const decoded = Buffer.from(value, 'base64')
  if (decoded.length <= HMAC_LENGTH) return { ok: false, ret: -20002, reason: 'Authorization is too short' }
  const mac = decoded.subarray(0, HMAC_LENGTH)
  const original = decoded.subarray(HMAC_LENGTH)
  const pairs = new Map<string, string>()
  for (const pair of original.toString('utf8').split('&')) {
    const at = pair.indexOf('=')
    if (at <= 0) return { ok: false, ret: -20002, reason: 'Authorization has a malformed field' }
    pairs.set(pair.slice(0, at), pair.slice(at + 1))
  }
  const appId = pairs.get('a')
  const secretId = pairs.get('k')
  const expiresAt = Number(pairs.get('e'))
  const signedAt = Number(pairs.get('t'))
  if (!appId || !secretId || !Number.isInteger(expiresAt) || !Number.isInteger(signedAt)) {
    return { ok: false, ret: -20002, reason: 'Authorization lacks a, k, e or t' }
  }
  const secretKey = keyFor(secretId)
  if (secretKey === undefined) return { ok: false, ret: -20003, reason: 'unknown SecretId' }
  const expected = createHmac('sha1', secretKey).update(original).digest()
  if (!timingSafeEqual(expected, mac)) return { ok: false, ret: -20003, reason: 'signature does not match' }
  if (expiresAt <= nowSeconds) return { ok: false, ret: -7, reason: 'signature expired' }
  return { ok: true, appId, secretId, expiresAt, signedAt }
}
