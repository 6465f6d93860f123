import fp from 'fastify-plugin'
import type { Config } from '../config/load.js'
import { createIdempotency, type Idempotency } from '../idempotency/idempotency.js'
import { createMemoryStore, createRedisStore, withFallback } from '../idempotency/store.js'

declare module 'fastify' {
  interface FastifyInstance {
    idempotency: Idempotency
  }
}

/** Idempotency-Key replies and claims: in Redis when configured, so every replica sees them; in memory otherwise. */
export default fp<{ config: Config }>(async (app, { config }) => {
  const local = createMemoryStore(config.IDEMPOTENCY_MEMORY_BYTES)
  let reported = false
  const store = app.redis === undefined
    ? local
    : withFallback(createRedisStore(app.redis, `${config.REDIS_KEY_PREFIX}idempotency:`), local, (error) => {
      if (!reported) app.log.warn({ redis: { error: error instanceof Error ? error.message : String(error) } }, 'idempotency keys kept in this replica\'s memory: redis unreachable')
      reported = true
      setTimeout(() => { reported = false }, 60_000).unref()
    })
  app.decorate('idempotency', createIdempotency({ store, ttlMs: config.IDEMPOTENCY_TTL_SECONDS * 1000 }))
}, { name: 'idempotency', dependencies: ['redis'] })
