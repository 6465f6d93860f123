import { Pool } from 'undici'
import { fusionError, isFusionError, type FusionError } from '../errors.js'
import { sendDirectly, type CallPolicy } from './chain.js'
import type { FusionRequest, UpstreamLogger } from './provider.js'
import { linkSignals } from '../linked-signal.js'

/**
 * One POST to an upstream, with everything both APIs share: a connection pool
 * per origin, a timeout bounded by the request's deadline, a cap on the answer's
 * size, transport failures named as our codes, and one metric and log line per
 * call. Each provider supplies only its body, its headers and how it reads the answer.
 */
export interface ExchangeOptions {
  /** Names the provider in logs and metrics. */
  provider: string
  timeoutMs: number
  connectTimeoutMs: number
  connections: number
  maxResponseBytes: number
  /** Sees every call's outcome: `code` is the upstream's own code, or ours when it sent none. */
  onCall?: (outcome: { action: string, ok: boolean, code: string, durationMs: number }) => void
  /** What every call passes through (budget, breaker, retries: upstream/chain.ts); by default each is sent once. */
  policy?: CallPolicy
}

export interface UpstreamAnswer {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
}

export interface ExchangeCall<T> {
  url: URL
  /** The activity the call is for, for the budget. */
  projectId: string
  /** Built at send time, so a signature's timestamp is as fresh as it can be. */
  headers: () => Record<string, string>
  body: Buffer
  request: Pick<FusionRequest, 'signal' | 'stop' | 'deadline' | 'beforeSend'>
  log?: UpstreamLogger | undefined
  /** Reads the answer; throws a FusionError (with `upstreamCode`) for an upstream failure. */
  interpret: (answer: UpstreamAnswer) => T
  /** What is asked (`fuse` on the legacy API; the X-TC-Action on API 3.0), for metrics and logs. */
  action: string
  /** The upstream's code for a success, for metrics and logs (legacy `0`, API 3.0 `OK`). */
  successCode: string
}

export interface Exchange {
  call: <T>(call: ExchangeCall<T>) => Promise<T>
  close: () => Promise<void>
}

// Transport failures we can name; anything else is an internal error.
const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT'])
// Failures before a connection existed: no byte of the request left, so a retry cannot double-bill.
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT'])
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE',
  'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_DESTROYED', 'UND_ERR_INFO'
])

/** Seconds a client waits after frequency control when the upstream names no delay: its quotas are per second. */
const FREQUENCY_CONTROL_RETRY_AFTER_SECONDS = 1
const MAX_RETRY_AFTER_SECONDS = 60

export function createExchange (options: ExchangeOptions): Exchange {
  // One pool per origin the calls name (a client calls one).
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

  const policy = options.policy ?? sendDirectly

  async function call<T> (spec: ExchangeCall<T>): Promise<T> {
    const { request } = spec
    // The chain's waits, and the moment before each attempt, also watch `stop`; the HTTP exchange itself does not.
    const watched = request.signal === undefined && request.stop === undefined ? undefined : linkSignals([request.signal, request.stop])
    try {
      return await policy(
        { projectId: spec.projectId, signal: watched?.signal, deadline: request.deadline, log: spec.log, beforeSend: request.beforeSend },
        async () => await send(spec)
      )
    } finally {
      watched?.unlink()
    }
  }

  /** One attempt: signed at send time, so a retry carries a fresh signature. */
  async function send<T> (spec: ExchangeCall<T>): Promise<T> {
    const { url, request } = spec
    const started = performance.now()
    const timeoutMs = Math.min(options.timeoutMs, request.deadline !== undefined ? request.deadline - Date.now() : Infinity)
    if (timeoutMs <= 0) {
      throw byDeadline(fusionError('FUSION_UPSTREAM_TIMEOUT', { cause: new Error('no time left before the request deadline') }))
    }
    const deadline = AbortSignal.timeout(timeoutMs)
    const watched = linkSignals([request.signal, deadline])
    const outcome: { status?: number, code?: string, ok: boolean, error?: string } = { ok: false }
    try {
      const response = await poolFor(url.origin).request({
        method: 'POST',
        path: url.pathname + url.search,
        headers: spec.headers(),
        body: spec.body,
        signal: watched.signal
      })
      outcome.status = response.statusCode
      const text = await readCapped(response.body, options.maxResponseBytes)
      const result = spec.interpret({ status: response.statusCode, headers: response.headers, text })
      outcome.ok = true
      outcome.code = spec.successCode
      return result
    } catch (error) {
      const mapped = classify(error, request.signal, deadline)
      // Cut short by the request's own deadline, not by the upstream's slowness.
      if (mapped.code === 'FUSION_UPSTREAM_TIMEOUT' && timeoutMs < options.timeoutMs) byDeadline(mapped)
      outcome.error = mapped.code
      outcome.code = mapped.upstreamCode
      throw mapped
    } finally {
      watched.unlink()
      const durationMs = performance.now() - started
      options.onCall?.({ action: spec.action, ok: outcome.ok, code: outcome.code ?? outcome.error ?? 'unknown', durationMs })
      spec.log?.info({
        upstream: {
          provider: options.provider,
          origin: url.origin,
          action: spec.action,
          status: outcome.status,
          code: outcome.code,
          error: outcome.error,
          bytesOut: spec.body.length,
          durationMs: Math.round(durationMs)
        }
      }, 'upstream call')
    }
  }

  return {
    call,
    close: async () => {
      await Promise.all([...pools.values()].map(async (pool) => await pool.close()))
      pools.clear()
    }
  }
}

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

/** Parses an answer as a JSON object; undefined for anything else. */
export function jsonObject (text: string): Record<string, unknown> | undefined {
  let payload: unknown
  try {
    payload = JSON.parse(text)
  } catch {
    return undefined
  }
  return typeof payload === 'object' && payload !== null && !Array.isArray(payload) ? payload as Record<string, unknown> : undefined
}

/** An answer without the upstream's own envelope: judged by its HTTP status, as a front proxy of the upstream sends it. */
export function failFromHttpStatus (answer: UpstreamAnswer, what: string): never {
  if (answer.status === 429) throw fusionError('FUSION_RATE_LIMITED', { retryAfterSeconds: retryAfterFrom(answer.headers) })
  if (answer.status === 413) throw fusionError('FUSION_IMAGE_TOO_LARGE')
  throw fusionError('FUSION_UPSTREAM_BAD_RESPONSE', { cause: new Error(`HTTP ${answer.status}, ${what}`) })
}

export function retryAfterFrom (headers: Record<string, string | string[] | undefined>): number {
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

/** A result URL a browser may follow: http(s) only, never `javascript:` or `data:` from a confused upstream. */
export function isHttpUrl (value: unknown): boolean {
  return typeof value === 'string' && /^https?:\/\//i.test(value)
}

function classify (error: unknown, clientSignal: AbortSignal | undefined, deadline: AbortSignal): FusionError {
  if (isFusionError(error)) return error
  if (error instanceof ResponseTooLargeError) {
    return fusionError('FUSION_UPSTREAM_BAD_RESPONSE', { cause: new Error('response over UPSTREAM_MAX_RESPONSE_BYTES') })
  }
  // Not HTTP at all (undici's parser gave up): the upstream's fault, not an internal error of ours. Sent, so not retried.
  if (error instanceof Error && error.name === 'HTTPParserError') return fusionError('FUSION_UPSTREAM_BAD_RESPONSE', { cause: error })
  if (clientSignal?.aborted === true) return fusionError('FUSION_CLIENT_CLOSED_REQUEST', { cause: error })
  // undici and Node name failures by `code`; a connect failure surfaces wrapped in some Node versions.
  const code = codeOf(error) ?? codeOf((error as { cause?: unknown } | null)?.cause)
  const notSent = code !== undefined && NOT_SENT_CODES.has(code)
  if (deadline.aborted && !notSent) return fusionError('FUSION_UPSTREAM_TIMEOUT', { cause: error })
  if (code !== undefined && TIMEOUT_CODES.has(code)) return fusionError('FUSION_UPSTREAM_TIMEOUT', { cause: error, retryable: notSent })
  if (code !== undefined && (UNREACHABLE_CODES.has(code) || notSent)) {
    return fusionError('FUSION_UPSTREAM_UNREACHABLE', { cause: error, retryable: notSent })
  }
  return fusionError('FUSION_INTERNAL_ERROR', { cause: error })
}

function codeOf (error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null | undefined)?.code
  return typeof code === 'string' ? code : undefined
}
