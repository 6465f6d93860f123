import fp from 'fastify-plugin'
import type { Redis } from 'ioredis'
import type { ConfigSlice } from '../config/load.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The shared Redis, when REDIS_URL is set. */
    redis: Redis | undefined
  }
}

/** The settings this plugin reads. */
export const redisSettings = ['REDIS_URL'] as const

/**
 * One ioredis client for the shared stores, configured to fail fast: a request
 * must never wait on a Redis that is down (the stores then fall back, see
 * docs/configuration.md). It reconnects by itself when Redis comes back.
 */
export default fp<{ config: ConfigSlice<typeof redisSettings[number]> }>(async (app, { config }) => {
  if (config.REDIS_URL === undefined) {
    app.decorate('redis', undefined)
    return
  }
  // Loaded only when configured, like the job line's.
  const { Redis } = await import('ioredis')
  const redis = new Redis(config.REDIS_URL, {
    connectTimeout: 500,
    commandTimeout: 500,
    maxRetriesPerRequest: 1,
    // Commands fail at once while disconnected instead of queueing without bound.
    enableOfflineQueue: false,
    retryStrategy: (attempt) => Math.min(attempt * 100, 1_000),
    lazyConnect: true
  })
  let reported = false
  redis.on('error', (error: Error) => {
    // One line per outage, not one per reconnection attempt.
    if (!reported) {
      app.log.warn(
        { redis: { error: error.message } },
        'redis unreachable: client limits fail open, the upstream budget runs on its per-replica share'
      )
    }
    reported = true
  })
  redis.on('ready', () => {
    if (reported) app.log.info('redis reachable again: shared limits restored')
    reported = false
  })
  // Connected before the first request when Redis is up; when it is down the
  // service starts anyway (after the 500 ms connect timeout) and retries in the background.
  await redis.connect().catch(() => {})
  app.decorate('redis', redis)
  app.metrics.watchRedis('shared', () => redis.status === 'ready')
  app.addHook('onClose', async () => { redis.disconnect() })
}, { name: 'redis', dependencies: ['metrics'] })
