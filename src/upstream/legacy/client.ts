import { Pool } from 'undici'
import { fusionError, isFusionError, type FusionError } from '../../errors.js'
import type { LegacyCredentials } from '../../config.js'
import type { FusionProvider, FusionRequest, FusionResult, UpstreamLogger } from '../provider.js'
import { signLegacyNow } from './sign.js'
import { FREQUENCY_CONTROL_RETRY_AFTER_SECONDS, LEGACY_RET_CODES, UNKNOWN_RET_CODE, parseRet } from './ret-codes.js'

export interface LegacyClientOptions {
  /** The endpoint, or a function that yields it at call time (the in-process emulator's port is known only after listen). */
  url: string | (() => string)
  mode: 'tencent' | 'emulator'
  credentials: LegacyCredentials
  signatureTtlSeconds: number
  timeoutMs: number
  connectTimeoutMs: number
  connections: number
  maxResponseBytes: number
  /** Sees every call's outcome: `code` is the upstream's ret, or our error code when there was none. */
  onCall?: (outcome: { ok: boolean, code: string, durationMs: number }) => void
}

// Transport failures we can name; anything else is an internal error.
const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT'])
// Failures before a connection existed: no byte of the request left, so a retry cannot double-bill.
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT'])
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE',
  'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_DESTROYED', 'UND_ERR_INFO'
])

export function createLegacyClient (options: LegacyClientOptions): FusionProvider {
  // One pool per origin: the URL is fixed in production, but may only become
  // known after the server listens (in-process emulator).
  const pools = new Map<string, Pool>()

  function poolFor (origin: string): Pool {
    let pool = pools.get(origin)
    if (pool === undefined) {
      pool = new Pool(origin, {
        connections: options.connections,
        connectTimeout: options.connectTimeoutMs,
        // Tighter than undici's 300 s defaults; the per-call deadline below bounds the whole exchange anyway.
        headersTimeout: options.timeoutMs,
        bodyTimeout: options.timeoutMs,
        // Below typical upstream idle timeouts, so we rarely reuse a socket the server already closed.
        keepAliveTimeout: 4_000,
        keepAliveMaxTimeout: 10_000
      })
      pools.set(origin, pool)
    }
    return pool
  }

  const currentUrl = (): URL => new URL(typeof options.url === 'function' ? options.url() : options.url)

  async function fuse (request: FusionRequest, log?: UpstreamLogger): Promise<FusionResult> {
    const url = currentUrl()
    const started = performance.now()
    const timeoutMs = Math.min(options.timeoutMs, request.deadline !== undefined ? request.deadline - Date.now() : Infinity)
    if (timeoutMs <= 0) throw byDeadline(fusionError('FUSION_UPSTREAM_TIMEOUT', { cause: new Error('no time left before the request deadline') }))
    const deadline = AbortSignal.timeout(timeoutMs)
    const signal = request.signal ? AbortSignal.any([request.signal, deadline]) : deadline
    const { credentials } = options
    const body = legacyBody(credentials, request)
    const outcome: { status?: number, ret?: number, error?: string } = {}
    try {
      const response = await poolFor(url.origin).request({
        method: 'POST',
        path: url.pathname + url.search,
        headers: {
          'content-type': 'application/json',
          authorization: signLegacyNow(credentials, options.signatureTtlSeconds)
        },
        body,
        signal
      })
      outcome.status = response.statusCode
      const text = await readCapped(response.body, options.maxResponseBytes)
      const result = interpret(response.statusCode, response.headers, text, request.resultType)
      outcome.ret = 0
      return result
    } catch (error) {
      const mapped = classify(error, request.signal, deadline)
      // Cut short by the request's own deadline, not by the upstream's slowness.
      if (mapped.code === 'FUSION_UPSTREAM_TIMEOUT' && timeoutMs < options.timeoutMs) byDeadline(mapped)
      outcome.error = mapped.code
      if (mapped.upstreamCode !== undefined) outcome.ret = Number(mapped.upstreamCode)
      throw mapped
    } finally {
      const durationMs = performance.now() - started
      options.onCall?.({
        ok: outcome.ret === 0,
        code: outcome.ret !== undefined ? String(outcome.ret) : outcome.error ?? 'unknown',
        durationMs
      })
      log?.info({
        upstream: {
          provider: 'legacy',
          origin: url.origin,
          status: outcome.status,
          ret: outcome.ret,
          error: outcome.error,
          bytesOut: body.length,
          durationMs: Math.round(durationMs)
        }
      }, 'upstream call')
    }
  }

  return {
    fuse,
    describe: () => {
      let origin: string | undefined
      try { origin = currentUrl().origin } catch { origin = undefined }
      return { provider: 'legacy', mode: options.mode, origin }
    },
    close: async () => {
      await Promise.all([...pools.values()].map(async (pool) => await pool.close()))
      pools.clear()
    }
  }
}

/**
 * The JSON body as bytes. Only the short fields go through JSON.stringify; the
 * base64 photo (which needs no escaping) is written into the buffer once,
 * instead of being copied through string concatenation and re-encoded by the client.
 */
function legacyBody (credentials: LegacyCredentials, request: FusionRequest): Buffer {
  const head = Buffer.from(
    `{"appid":${JSON.stringify(credentials.appId)},"uin":${JSON.stringify(credentials.uin)},` +
    `"project_id":${JSON.stringify(request.projectId)},"model_id":${JSON.stringify(request.modelId)},` +
    `"rsp_img_type":${JSON.stringify(request.resultType)},"img_data":"`)
  const photo = request.image.toString('base64')
  const body = Buffer.allocUnsafe(head.length + photo.length + 2)
  head.copy(body, 0)
  body.write(photo, head.length, 'latin1')
  body.write('"}', head.length + photo.length, 'latin1')
  return body
}

const MAX_RETRY_AFTER_SECONDS = 60

/** Marks a timeout the request's deadline caused: the circuit breaker does not blame the upstream for it. */
function byDeadline (error: FusionError): FusionError {
  error.byDeadline = true
  return error
}

class ResponseTooLargeError extends Error {}

async function readCapped (body: AsyncIterable<Buffer> & { destroy: (error?: Error) => unknown }, limit: number): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += chunk.length
    if (size > limit) {
      body.destroy()
      throw new ResponseTooLargeError()
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}

function retryAfterFrom (headers: Record<string, string | string[] | undefined>): number {
  const raw = headers['retry-after']
  const value = Array.isArray(raw) ? raw[0] : raw
  if (value !== undefined) {
    const seconds = Number(value)
    // Capped: a proxy's "Retry-After: 86400" must not pause every replica for a day.
    if (Number.isFinite(seconds) && seconds >= 0) return Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(1, Math.ceil(seconds)))
    const date = Date.parse(value)
    if (!Number.isNaN(date)) return Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(1, Math.ceil((date - Date.now()) / 1000)))
  }
  return FREQUENCY_CONTROL_RETRY_AFTER_SECONDS
}

function interpret (
  status: number,
  headers: Record<string, string | string[] | undefined>,
  text: string,
  resultType: FusionRequest['resultType']
): FusionResult {
  let payload: unknown
  try {
    payload = JSON.parse(text)
  } catch {
    payload = undefined
  }
  const record = typeof payload === 'object' && payload !== null && !Array.isArray(payload)
    ? payload as Record<string, unknown>
    : undefined
  const ret = record ? parseRet(record.ret) : undefined

  if (ret === undefined) {
    // No ret to go by: fall back on the HTTP status, as a front proxy of the upstream would send it.
    if (status === 429) throw fusionError('FUSION_RATE_LIMITED', { retryAfterSeconds: retryAfterFrom(headers) })
    if (status === 413) throw fusionError('FUSION_IMAGE_TOO_LARGE')
    throw fusionError('FUSION_UPSTREAM_BAD_RESPONSE', { cause: new Error(`HTTP ${status}, no ret`) })
  }

  if (ret !== 0) {
    const rule = LEGACY_RET_CODES.get(ret) ?? UNKNOWN_RET_CODE
    const frequencyControl = rule.code === 'FUSION_RATE_LIMITED'
    // Frequency control is never retried (that is the budget's job); billed answers never are.
    const retryable = rule.retryable && !rule.billed && !frequencyControl
    return failWith(rule.code, String(ret), frequencyControl ? retryAfterFrom(headers) : undefined, retryable)
  }

  if (resultType === 'url') {
    const imageUrl = record?.img_url
    if (typeof imageUrl !== 'string' || !/^https?:\/\//i.test(imageUrl)) {
      throw fusionError('FUSION_UPSTREAM_BAD_RESPONSE', { cause: new Error('ret 0 without an img_url') })
    }
    return { resultType: 'url', imageUrl }
  }
  // The 2018-11 docs return base64 in img_base64; the older tables put it in img_url.
  const candidate = typeof record?.img_base64 === 'string' && record.img_base64 !== ''
    ? record.img_base64
    : record?.img_url
  if (typeof candidate !== 'string' || candidate === '' || /^https?:\/\//i.test(candidate)) {
    throw fusionError('FUSION_UPSTREAM_BAD_RESPONSE', { cause: new Error('ret 0 without base64 image data') })
  }
  return { resultType: 'base64', imageBase64: candidate.replace(/^data:[^,]*,/, '') }
}

function failWith (code: FusionError['code'], upstreamCode: string, retryAfterSeconds: number | undefined, retryable: boolean): never {
  throw fusionError(code, { upstreamCode, retryable, ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }) })
}

function classify (error: unknown, clientSignal: AbortSignal | undefined, deadline: AbortSignal): FusionError {
  if (isFusionError(error)) return error
  if (error instanceof ResponseTooLargeError) {
    return fusionError('FUSION_UPSTREAM_BAD_RESPONSE', { cause: new Error('response over UPSTREAM_MAX_RESPONSE_BYTES') })
  }
  if (clientSignal?.aborted === true) return fusionError('FUSION_CLIENT_CLOSED_REQUEST', { cause: error })
  // undici and Node name failures by `code`; a connect failure surfaces wrapped in some Node versions.
  const code = codeOf(error) ?? codeOf((error as { cause?: unknown } | null)?.cause)
  const notSent = code !== undefined && NOT_SENT_CODES.has(code)
  if (deadline.aborted && !notSent) return fusionError('FUSION_UPSTREAM_TIMEOUT', { cause: error })
  if (code !== undefined && TIMEOUT_CODES.has(code)) return fusionError('FUSION_UPSTREAM_TIMEOUT', { cause: error, retryable: notSent })
  if (code !== undefined && (UNREACHABLE_CODES.has(code) || notSent)) return fusionError('FUSION_UPSTREAM_UNREACHABLE', { cause: error, retryable: notSent })
  return fusionError('FUSION_INTERNAL_ERROR', { cause: error })
}

function codeOf (error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null | undefined)?.code
  return typeof code === 'string' ? code : undefined
}
