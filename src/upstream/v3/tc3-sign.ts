import { createHash, createHmac } from 'node:crypto'

/**
 * TC3-HMAC-SHA256, the signature of Tencent Cloud API 3.0
 * (cloud.tencent.com/document/api/213/30654), written from the spec:
 *
 *   CanonicalRequest = POST \n <path, "/"> \n \n CanonicalHeaders \n SignedHeaders \n hex(SHA256(payload))
 *   StringToSign     = TC3-HMAC-SHA256 \n timestamp \n <UTC date>/<service>/tc3_request \n hex(SHA256(CanonicalRequest))
 *   kSigning         = HMAC(HMAC(HMAC("TC3" + SecretKey, date), service), "tc3_request")
 *   Signature        = hex(HMAC(kSigning, StringToSign))
 *
 * Header keys and values are lowercased and trimmed in the canonical form;
 * the Content-Type must be sent exactly as signed (a client that appends
 * "; charset=utf-8" on its own breaks the signature).
 */
export interface Tc3Input {
  secretId: string
  secretKey: string
  /** The credential scope's service, e.g. `facefusion`. */
  service: string
  host: string
  /** The canonical URI: the request's path. API 3.0 endpoints are called at `/`. */
  path?: string
  /** Unix seconds; also sent as X-TC-Timestamp. */
  timestamp: number
  contentType: string
  /** The exact body bytes. */
  payload: string | Buffer
  /** Signed in addition to content-type and host (e.g. `{ 'x-tc-action': 'FuseFace' }`). */
  extraSignedHeaders?: Record<string, string>
}

export interface Tc3Signature {
  authorization: string
  signature: string
  /** The credential scope's date: the UTC date of the timestamp. */
  date: string
  hashedPayload: string
  canonicalRequest: string
  hashedCanonicalRequest: string
  stringToSign: string
  signedHeaders: string
}

const sha256Hex = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex')
const hmac = (key: string | Buffer, data: string): Buffer => createHmac('sha256', key).update(data, 'utf8').digest()

/** The UTC date of a Unix timestamp: 1551113065 is 2019-02-25, though already the 26th in UTC+8. */
export function utcDate (timestamp: number): string {
  return new Date(timestamp * 1000).toISOString().slice(0, 10)
}

export function signingKey (secretKey: string, date: string, service: string): Buffer {
  return hmac(hmac(hmac(`TC3${secretKey}`, date), service), 'tc3_request')
}

export function tc3Sign (input: Tc3Input): Tc3Signature {
  const entries: Array<[string, string]> = [
    ['content-type', input.contentType],
    ['host', input.host],
    ...Object.entries(input.extraSignedHeaders ?? {})
  ]
  const headers = new Map(entries.map(([key, value]) => [key.trim().toLowerCase(), value.trim().toLowerCase()]))
  const keys = [...headers.keys()].sort()
  const canonicalHeaders = keys.map((key) => `${key}:${headers.get(key)!}\n`).join('')
  const signedHeaders = keys.join(';')
  const hashedPayload = sha256Hex(input.payload)
  const canonicalRequest = ['POST', input.path ?? '/', '', canonicalHeaders, signedHeaders, hashedPayload].join('\n')
  const hashedCanonicalRequest = sha256Hex(canonicalRequest)
  const date = utcDate(input.timestamp)
  const scope = `${date}/${input.service}/tc3_request`
  const stringToSign = ['TC3-HMAC-SHA256', String(input.timestamp), scope, hashedCanonicalRequest].join('\n')
  const signature = createHmac('sha256', signingKey(input.secretKey, date, input.service)).update(stringToSign, 'utf8').digest('hex')
  return {
    authorization: `TC3-HMAC-SHA256 Credential=${input.secretId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`,
    signature,
    date,
    hashedPayload,
    canonicalRequest,
    hashedCanonicalRequest,
    stringToSign,
    signedHeaders
  }
}
