import { timingSafeEqual } from 'node:crypto'
import type { Api3Key } from '../shared/accounts.js'
import { header } from '../shared/http.js'
import { computeTc3, scopeDate } from './tc3.js'

/**
 * Server side of TC3-HMAC-SHA256 (cloud.tencent.com/document/api/213/30654), as API 3.0
 * checks it: the Authorization header is parsed, the timestamp must be within
 * five minutes of the server's clock, and the signature is recomputed over the
 * received value of every signed header and the exact body bytes. Nothing is
 * normalised beyond what the algorithm itself does (lowercase, trim), so a
 * Content-Type sent differently from how it was signed fails, as upstream.
 */
export type Tc3Verdict =
  | { ok: true, secretId: string }
  | { ok: false, code: Tc3FailureCode, message: string }

export type Tc3FailureCode =
  | 'AuthFailure.InvalidAuthorization'
  | 'AuthFailure.SignatureExpire'
  | 'AuthFailure.SecretIdNotFound'
  | 'AuthFailure.SignatureFailure'
  | 'AuthFailure.TokenFailure'
  | 'MissingParameter'
  | 'InvalidParameter'

export interface Tc3Request {
  /** As node gives them: lowercased names. */
  headers: Record<string, string | string[] | undefined>
  /** The exact body bytes. */
  body: Buffer
  keyFor: (secretId: string) => Api3Key | undefined
  nowSeconds: number
  /** The credential scope's service. Default `facefusion`. */
  service?: string
  /** The path the request was sent to, accepted as canonical URI besides `/` (see signedForms). */
  path?: string
}

const TC3_MAX_SKEW_SECONDS = 300

const ALGORITHM = 'TC3-HMAC-SHA256'

interface ParsedAuthorization {
  secretId: string
  date: string
  service: string
  signedHeaders: string[]
  signature: string
}

const fail = (code: Tc3FailureCode, message: string): Tc3Verdict => ({ ok: false, code, message })

/** Fields in any order, separated by commas; undefined when anything is missing or malformed. */
export function parseTc3Authorization (value: string): ParsedAuthorization | undefined {
  const trimmed = value.trim()
  if (!trimmed.startsWith(`${ALGORITHM} `)) return undefined
  const fields = new Map<string, string>()
  for (const part of trimmed.slice(ALGORITHM.length).split(',')) {
    const at = part.indexOf('=')
    if (at <= 0) return undefined
    fields.set(part.slice(0, at).trim(), part.slice(at + 1).trim())
  }
  const scope = (fields.get('Credential') ?? '').split('/')
  const signedHeaders = (fields.get('SignedHeaders') ?? '').split(';').map((name) => name.trim().toLowerCase())
  const signature = fields.get('Signature') ?? ''
  const [secretId, date, service, terminator] = scope
  if (scope.length !== 4 || !secretId || !date || !service || terminator !== 'tc3_request') return undefined
  if (!/^\d{4}-\d{2}-\d{2}$/.test(date) || !/^[0-9a-fA-F]{64}$/.test(signature)) return undefined
  if (signedHeaders.some((name) => name === '')) return undefined
  return { secretId, date, service, signedHeaders, signature }
}

function readTimestamp (headers: Tc3Request['headers']): number | Tc3Verdict {
  const raw = header(headers, 'x-tc-timestamp')
  if (raw === undefined || raw.trim() === '') {
    return fail('MissingParameter', 'The request is missing the required parameter `X-TC-Timestamp`.')
  }
  if (!/^\d{1,12}$/.test(raw.trim())) return fail('InvalidParameter', 'The parameter `X-TC-Timestamp` must be a Unix time in seconds.')
  return Number(raw.trim())
}

/** Why the signed material cannot match, before any HMAC is computed; undefined when it may. */
function scopeProblem (auth: ParsedAuthorization, timestamp: number, service: string, headers: Tc3Request['headers']): string | undefined {
  if (auth.date !== scopeDate(timestamp)) {
    return `The credential date ${auth.date} is not the UTC date of X-TC-Timestamp (${scopeDate(timestamp)}).`
  }
  if (auth.service !== service) return `The credential scope names the service ${auth.service}, not ${service}.`
  for (const required of ['content-type', 'host']) {
    if (!auth.signedHeaders.includes(required)) return `SignedHeaders must include ${required}.`
  }
  const absent = auth.signedHeaders.find((name) => header(headers, name) === undefined)
  if (absent !== undefined) return `The signed header ${absent} is not in the request.`
  return undefined
}

/**
 * The (host, canonical URI) pairs a client may have signed. Tencent's real
 * endpoints are called at `/` on the default port, where all of these are the
 * same; pointed at a port or a path prefix, clients differ: Tencent's Node SDK
 * signs the host name without the port, others sign the Host header as sent,
 * and a client may sign the path it posts to rather than `/`. Each is accepted.
 */
function signedForms (request: Tc3Request): Array<{ host: string, path: string }> {
  const sentHost = header(request.headers, 'host') ?? ''
  const hosts = [...new Set([sentHost, hostName(sentHost)])]
  const paths = [...new Set(['/', request.path ?? '/'])]
  return hosts.flatMap((host) => paths.map((path) => ({ host, path })))
}

function signatureMatches (auth: ParsedAuthorization, request: Tc3Request, secretKey: string, timestamp: number, service: string): boolean {
  const received = Buffer.from(auth.signature, 'hex')
  return signedForms(request).some(({ host, path }) => {
    const signed = auth.signedHeaders.map((name) => [name, name === 'host' ? host : header(request.headers, name) ?? ''] as const)
    const expected = computeTc3({ secretKey, service, timestamp, path, headers: signed, body: request.body })
    // The canonical SignedHeaders are sorted and deduplicated: a client that signed another list cannot match.
    if (expected.signedHeaders !== auth.signedHeaders.join(';')) return false
    return timingSafeEqual(Buffer.from(expected.signature, 'hex'), received)
  })
}

/** `127.0.0.1:8090` → `127.0.0.1`; `[::1]:8090` → `[::1]`. */
function hostName (host: string): string {
  return host.replace(/:\d+$/, '')
}

function tokenProblem (key: Api3Key, sent: string | undefined): string | undefined {
  if (key.sessionToken === undefined) {
    return sent !== undefined && sent !== '' ? 'X-TC-Token was sent with a permanent SecretId.' : undefined
  }
  if (sent === undefined || sent === '') return 'A temporary SecretId needs its session token in X-TC-Token.'
  const expected = Buffer.from(key.sessionToken)
  const received = Buffer.from(sent)
  return expected.length === received.length && timingSafeEqual(expected, received)
    ? undefined
    : 'X-TC-Token does not belong to this SecretId.'
}

export function verifyTc3 (request: Tc3Request): Tc3Verdict {
  const service = request.service ?? 'facefusion'
  const authorization = header(request.headers, 'authorization')
  if (authorization === undefined || authorization.trim() === '') {
    return fail('AuthFailure.InvalidAuthorization', 'The Authorization header is missing.')
  }
  const auth = parseTc3Authorization(authorization)
  if (auth === undefined) return fail('AuthFailure.InvalidAuthorization', 'Authorization is not a valid TC3-HMAC-SHA256 header.')

  const timestamp = readTimestamp(request.headers)
  if (typeof timestamp !== 'number') return timestamp
  if (Math.abs(request.nowSeconds - timestamp) > TC3_MAX_SKEW_SECONDS) {
    return fail(
      'AuthFailure.SignatureExpire',
      `Signature expired. Timestamp: ${timestamp}, server time: ${request.nowSeconds}; ` +
      `they may differ by at most ${TC3_MAX_SKEW_SECONDS} seconds.`
    )
  }

  const key = request.keyFor(auth.secretId)
  if (key === undefined) return fail('AuthFailure.SecretIdNotFound', 'The SecretId is not found.')

  const problem = scopeProblem(auth, timestamp, service, request.headers)
  if (problem !== undefined) return fail('AuthFailure.SignatureFailure', problem)
  if (!signatureMatches(auth, request, key.secretKey, timestamp, service)) {
    return fail('AuthFailure.SignatureFailure', 'The provided credentials could not be validated. Please check your signature is correct.')
  }

  const tokenFault = tokenProblem(key, header(request.headers, 'x-tc-token'))
  if (tokenFault !== undefined) return fail('AuthFailure.TokenFailure', tokenFault)
  return { ok: true, secretId: auth.secretId }
}
