import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import { createUpstreamBudget, type UpstreamBudget } from '../traffic/upstream-budget.js'

declare module 'fastify' {
  interface FastifyInstance {
    upstreamBudget: UpstreamBudget
  }
}

/** The upstream QPS budget, shared through Redis by every replica using the same account. */
export default fp<{ config: Config }>(async (app, { config }) => {
  app.decorate('upstreamBudget', createUpstreamBudget({
    qps: config.UPSTREAM_QPS,
    projectQps: config.projectQps,
    maxWaitMs: config.UPSTREAM_BUDGET_WAIT_MS,
    fallbackQps: config.UPSTREAM_FALLBACK_QPS,
    keyPrefix: `${config.REDIS_KEY_PREFIX}budget:${config.upstream.credentials.appId}`,
    ...(app.redis !== undefined ? { redis: app.redis } : {}),
    onFallback: (error) => {
      app.log.warn({ redis: { error: error instanceof Error ? error.message : String(error) } }, 'upstream budget on its per-replica share: redis unreachable')
    }
  }))
}, { name: 'upstream-budget', dependencies: ['redis'] })
