import { createHash } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { ConfigSlice } from '../config/load.js'
import { isFinalAnswer, isFusionError, messageOf, type ErrorCode } from '../errors.js'
import { createIdempotency, parseIdempotencyKey, type Idempotency, type Ownership } from '../idempotency/idempotency.js'
import type { StoredReply } from '../idempotency/store.js'
import { createMemoryStore, createRedisStore, withFallback } from '../idempotency/store.js'

/**
 * Idempotency-Key for the routes that opt in (`config: { idempotency: true }`):
 * the key is read before the body, the route calls `request.idempotency.begin`
 * once it knows the payload, and the reply of the request that did the work is
 * stored as it goes out, unless a retry may change it (`transient` in the
 * errors catalogue) or it is too large.
 */
export interface RequestIdempotency {
  /**
   * Claims the key for this payload: a stored reply to replay, or the work is
   * this request's. `waiting` runs once if another request holds the key and
   * this one waits for it (within `deadline`).
   */
  begin: (
    fingerprint: string, options: { deadline: number, signal: AbortSignal, waiting?: () => void }
  ) => Promise<{ replay: StoredReply } | { owner: true }>
  /** Until when the answer's result URL works (epoch ms): a reply is never replayed past it. */
  expiresAt?: number
  /** Held once `begin` made the work this request's: its reply is stored (or the key freed) as it goes out. */
  ownership?: Ownership
}

declare module 'fastify' {
  interface FastifyInstance {
    idempotency: Idempotency
  }
  interface FastifyRequest {
    /** Set on routes that opt in, when the request sent an Idempotency-Key. */
    idempotency: RequestIdempotency | null
    /** The code of the error this request is answered with, set by the error handler. */
    errorCode: ErrorCode | undefined
  }
  interface FastifyContextConfig {
    idempotency?: boolean
  }
}

/** The settings this plugin reads. */
export const idempotencySettings = [
  'IDEMPOTENCY_MAX_REPLY_BYTES', 'IDEMPOTENCY_MEMORY_BYTES', 'REDIS_KEY_PREFIX', 'IDEMPOTENCY_TTL_SECONDS'
] as const

export default fp<{ config: ConfigSlice<typeof idempotencySettings[number]> }>(async (app, { config }) => {
  const local = createMemoryStore(config.IDEMPOTENCY_MEMORY_BYTES)
  let reported = false
  const onFallback = (error: unknown): void => {
    // One line a minute at most, however many requests fall back.
    if (reported) return
    reported = true
    setTimeout(() => { reported = false }, 60_000).unref()
    app.log.warn(
      { redis: { error: messageOf(error) } },
      'idempotency keys kept in this replica\'s memory: redis unreachable'
    )
  }
  const onWrittenBack = (counts: { replies: number, claims: number }): void => {
    app.log.info({ idempotency: { writtenBack: counts } }, 'idempotency keys kept in memory during the redis outage written back to redis')
  }
  const redis = app.redis
  const fallback = redis === undefined
    ? undefined
    : withFallback(createRedisStore(redis, `${config.REDIS_KEY_PREFIX}idempotency:`), local, { onFallback, onWrittenBack })
  // Redis is back: every replica gets to see what this one answered from memory meanwhile.
  if (fallback !== undefined) redis?.on('ready', () => { void fallback.writeBack() })
  const store = fallback ?? local
  const idempotency = createIdempotency({ store, ttlMs: config.IDEMPOTENCY_TTL_SECONDS * 1000 })
  const count = (outcome: string): void => { app.metrics.idempotency.inc({ outcome }) }
  app.decorate('idempotency', idempotency)
  app.decorateRequest('idempotency', null)
  app.decorateRequest('errorCode', undefined)

  // Before the body is read: a malformed key is refused unread.
  app.addHook('preParsing', async (request, _reply, payload) => {
    if (request.routeOptions.config.idempotency !== true) return payload
    const key = parseIdempotencyKey(request.headers['idempotency-key'])
    if (key === undefined) return payload
    const scope = scopeOf(request, key)
    const keyed: RequestIdempotency = {
      async begin (fingerprint, { deadline, signal, waiting }) {
        try {
          const begun = await idempotency.begin(scope, fingerprint, deadline, signal, waiting)
          if ('replay' in begun) {
            count('replayed')
            return begun
          }
          keyed.ownership = begun.owner
          return { owner: true }
        } catch (error) {
          if (isFusionError(error) && error.code === 'FUSION_IDEMPOTENCY_KEY_REUSED') count('reused')
          if (isFusionError(error) && error.code === 'FUSION_IDEMPOTENCY_IN_PROGRESS') count('in_progress')
          throw error
        }
      }
    }
    request.idempotency = keyed
    return payload
  })

  // The owner of a key records the reply exactly as it goes out, errors included; onSend runs even for a client that
  // left, and an unsettled claim expires with the deadline anyway.
  app.addHook('onSend', async (request, reply, payload) => {
    const ownership = request.idempotency?.ownership
    if (ownership !== undefined) {
      request.idempotency!.ownership = undefined
      await record(request, reply, ownership, payload)
    }
    return payload
  })

  async function record (request: FastifyRequest, reply: FastifyReply, ownership: Ownership, payload: unknown): Promise<void> {
    const body = typeof payload === 'string' ? Buffer.from(payload) : Buffer.isBuffer(payload) ? payload : undefined
    const storable = body !== undefined && isFinalAnswer(request.errorCode) && body.length <= config.IDEMPOTENCY_MAX_REPLY_BYTES
    try {
      if (!storable) {
        await ownership.release()
        count('not_stored')
        return
      }
      const expiresAt = request.idempotency?.expiresAt
      const headers = Object.fromEntries(REPLAYED_HEADERS.flatMap((name) => {
        const value = reply.getHeader(name)
        return value === undefined ? [] : [[name, String(value)]]
      }))
      await ownership.complete({
        status: reply.statusCode,
        contentType: String(reply.getHeader('content-type') ?? 'application/json'),
        ...(Object.keys(headers).length > 0 ? { headers } : {}),
        body,
        ...(expiresAt !== undefined ? { expiresAt } : {})
      })
      count('stored')
    } catch (error) {
      // The answer still goes out; only its replay is lost, and a retry does the work again.
      request.log.warn({ err: error }, 'could not store the idempotent reply')
    }
  }
}, { name: 'idempotency', dependencies: ['redis', 'metrics', 'client-identity'] })

/**
 * Headers that belong to the answer itself and are replayed with it: a queued job's place (its first poll,
 * `Retry-After`, is advice that holds for a replay too), and the preferences honoured.
 */
const REPLAYED_HEADERS = ['location', 'retry-after', 'preference-applied'] as const

/**
 * Keys are the client's own: a known API key keeps its keys apart from
 * everyone else's. Anonymous clients share one space (an address is no
 * identity for a phone that changes networks between retries), where a random
 * key (a UUID) does not collide. Only a digest reaches the store.
 */
function scopeOf (request: FastifyRequest, key: string): string {
  return createHash('sha256').update(request.client.apiKey ?? '').update('\n').update(key).digest('hex')
}
