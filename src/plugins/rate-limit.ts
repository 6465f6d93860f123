import { createHash } from 'node:crypto'
import rateLimit, { normalizeIP } from '@fastify/rate-limit'
import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'
import type { Config } from '../config/load.js'
import { fusionError } from '../errors.js'

/**
 * Per-client limits, before the body is read: keyed on the client's API key
 * when it presents a known one, else on its IP as resolved through
 * TRUST_PROXY (IPv6 clients per /64, as the plugin does by default). Counters
 * live in Redis when configured, so every replica counts together; when Redis
 * is unreachable the limits fail open (the upstream budget still protects the
 * upstream). Only routes that opt in (`config.rateLimit`) are limited: health
 * checks never are.
 */
export const API_KEY_HEADER = 'x-api-key'

export function presentedApiKey (request: FastifyRequest): string | undefined {
  const value = request.headers[API_KEY_HEADER]
  return typeof value === 'string' && value !== '' ? value : undefined
}

/** A presented API key must be a known one when keys are configured: 401 otherwise. */
export function assertKnownApiKey (request: FastifyRequest, known: ReadonlySet<string>): void {
  const key = presentedApiKey(request)
  if (key !== undefined && known.size > 0 && !known.has(key)) throw fusionError('FUSION_UNKNOWN_API_KEY')
}

export default fp<{ config: Config }>(async (app, { config }) => {
  const knownKey = (request: FastifyRequest): string | undefined => {
    const key = presentedApiKey(request)
    return key !== undefined && config.clientApiKeys.has(key) ? key : undefined
  }
  await app.register(rateLimit, {
    global: false,
    max: (request) => knownKey(request) !== undefined ? config.RATE_LIMIT_API_KEY_MAX : config.RATE_LIMIT_MAX,
    timeWindow: config.RATE_LIMIT_WINDOW_MS,
    // The key itself is a secret: only a digest goes to the store.
    keyGenerator: (request) => {
      const key = knownKey(request)
      return key !== undefined ? `key:${createHash('sha256').update(key).digest('hex').slice(0, 32)}` : `ip:${normalizeIP(request.ip)}`
    },
    ...(app.redis !== undefined ? { redis: app.redis } : {}),
    nameSpace: `${config.REDIS_KEY_PREFIX}rate-limit:`,
    skipOnError: true,
    errorResponseBuilder: (_request, context) => fusionError('FUSION_CLIENT_RATE_LIMITED', {
      retryAfterSeconds: Math.max(1, Math.ceil(context.ttl / 1000))
    })
  })
}, { name: 'rate-limit', dependencies: ['redis'] })
