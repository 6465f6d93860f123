import rateLimit from '@fastify/rate-limit'
import fp from 'fastify-plugin'
import type { ConfigSlice } from '../config/load.js'
import { fusionError } from '../errors.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A limited route that allows this many times a client's allowance per window, counted on its own (default 1). */
    rateLimitMultiple?: number
  }
}

/** The settings this plugin reads. */
export const rateLimitSettings = ['RATE_LIMIT_API_KEY_MAX', 'RATE_LIMIT_MAX', 'RATE_LIMIT_WINDOW_MS', 'REDIS_KEY_PREFIX'] as const

/**
 * Per-client limits, before the body is read: keyed on the client as
 * plugins/client-identity.ts resolved it (a known API key gets its own, larger
 * allowance). Counters live in Redis when configured, so every replica counts
 * together; when Redis is unreachable the limits fail open (the upstream
 * budget still protects the upstream). Only routes that opt in
 * (`config.rateLimit`) are limited, each counted on its own: health checks
 * never are.
 */
export default fp<{ config: ConfigSlice<typeof rateLimitSettings[number]> }>(async (app, { config }) => {
  await app.register(rateLimit, {
    global: false,
    max: (request) => (request.client.apiKey !== undefined ? config.RATE_LIMIT_API_KEY_MAX : config.RATE_LIMIT_MAX) *
      (request.routeOptions.config.rateLimitMultiple ?? 1),
    timeWindow: config.RATE_LIMIT_WINDOW_MS,
    keyGenerator: (request) => request.client.id,
    ...(app.redis !== undefined ? { redis: app.redis } : {}),
    nameSpace: `${config.REDIS_KEY_PREFIX}rate-limit:`,
    skipOnError: true,
    errorResponseBuilder: (_request, context) => fusionError('FUSION_CLIENT_RATE_LIMITED', {
      retryAfterSeconds: Math.max(1, Math.ceil(context.ttl / 1000))
    })
  })
}, { name: 'rate-limit', dependencies: ['redis', 'client-identity'] })
