import { createHash, createHmac } from 'node:crypto'

/**
 * The emulator's own computation of a TC3-HMAC-SHA256 signature, written from
 * the published algorithm (cloud.tencent.com/document/api/213/30654), apart
 * from the gateway's signer so that a mistake in one is caught by the other:
 *
 *   CanonicalRequest = Method \n CanonicalURI \n CanonicalQueryString \n CanonicalHeaders \n SignedHeaders \n HashedPayload
 *     CanonicalHeaders: `key:value\n` per signed header, key and value lowercased and trimmed, sorted by key
 *     SignedHeaders:    the same keys joined by `;`
 *     HashedPayload:    lowercase hex SHA-256 of the exact body bytes
 *   StringToSign     = TC3-HMAC-SHA256 \n <timestamp> \n <UTC date>/<service>/tc3_request \n hex(SHA-256(CanonicalRequest))
 *   kDate = HMAC-SHA256("TC3" + SecretKey, date); kService = HMAC-SHA256(kDate, service);
 *   kSigning = HMAC-SHA256(kService, "tc3_request"); Signature = hex(HMAC-SHA256(kSigning, StringToSign))
 */
export interface Tc3Material {
  secretKey: string
  service: string
  /** Unix seconds (X-TC-Timestamp). */
  timestamp: number
  method?: string
  /** The canonical URI. */
  path: string
  /** The signed headers, by name, with the values they were signed with. */
  headers: ReadonlyArray<readonly [string, string]>
  /** The exact body bytes. */
  body: Buffer
}

export interface Tc3Computed {
  canonicalRequest: string
  stringToSign: string
  signedHeaders: string
  /** Lowercase hex. */
  signature: string
}

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex')
const hmacSha256 = (key: string | Buffer, data: string): Buffer => createHmac('sha256', key).update(data, 'utf8').digest()

/** The credential scope's date: the UTC date of the timestamp, whatever the local zone. */
export function scopeDate (timestamp: number): string {
  return new Date(timestamp * 1000).toISOString().slice(0, 10)
}

/** kSigning: the chain date → service → tc3_request, keyed first by "TC3" + SecretKey. */
export function deriveSigningKey (secretKey: string, date: string, service: string): Buffer {
  const kDate = hmacSha256(`TC3${secretKey}`, date)
  const kService = hmacSha256(kDate, service)
  return hmacSha256(kService, 'tc3_request')
}

export function computeTc3 (material: Tc3Material): Tc3Computed {
  const canonical = new Map<string, string>()
  for (const [name, value] of material.headers) canonical.set(name.trim().toLowerCase(), value.trim().toLowerCase())
  const names = [...canonical.keys()].sort()
  const canonicalHeaders = names.map((name) => `${name}:${canonical.get(name)!}\n`).join('')
  const signedHeaders = names.join(';')
  const canonicalRequest = [
    material.method ?? 'POST',
    material.path,
    // POST carries no query string.
    '',
    canonicalHeaders,
    signedHeaders,
    sha256(material.body)
  ].join('\n')
  const date = scopeDate(material.timestamp)
  const stringToSign = [
    'TC3-HMAC-SHA256',
    String(material.timestamp),
    `${date}/${material.service}/tc3_request`,
    sha256(canonicalRequest)
  ].join('\n')
  const signature = createHmac('sha256', deriveSigningKey(material.secretKey, date, material.service))
    .update(stringToSign, 'utf8')
    .digest('hex')
  return { canonicalRequest, stringToSign, signedHeaders, signature }
}
