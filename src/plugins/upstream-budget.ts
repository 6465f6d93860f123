import { createHash } from 'node:crypto'
import fp from 'fastify-plugin'
import type { ConfigSlice } from '../config/load.js'
import { messageOf } from '../errors.js'
import type { UpstreamSettings } from '../upstream/settings.js'
import { createUpstreamBudget, type UpstreamBudget } from '../traffic/upstream-budget.js'

declare module 'fastify' {
  interface FastifyInstance {
    upstreamBudget: UpstreamBudget
  }
}

/** The settings this plugin reads. */
export const upstreamBudgetSettings = [
  'UPSTREAM_QPS', 'projectQps', 'UPSTREAM_BUDGET_WAIT_MS', 'UPSTREAM_FALLBACK_QPS', 'REDIS_KEY_PREFIX', 'upstream'
] as const

/** The upstream QPS budget, shared through Redis by every replica using the same account. */
export default fp<{ config: ConfigSlice<typeof upstreamBudgetSettings[number]> }>(async (app, { config }) => {
  app.decorate('upstreamBudget', createUpstreamBudget({
    qps: config.UPSTREAM_QPS,
    projectQps: config.projectQps,
    maxWaitMs: config.UPSTREAM_BUDGET_WAIT_MS,
    fallbackQps: config.UPSTREAM_FALLBACK_QPS,
    keyPrefix: `${config.REDIS_KEY_PREFIX}budget:${accountKey(config.upstream)}`,
    ...(app.redis !== undefined ? { redis: app.redis } : {}),
    onFallback: (error) => {
      app.log.warn(
        { redis: { error: messageOf(error) } },
        'upstream budget on its per-replica share: redis unreachable'
      )
    }
  }))
}, { name: 'upstream-budget', dependencies: ['redis'] })

/**
 * Whose quota the budget counts. The legacy API names the account (appid); API
 * 3.0 knows only the key, so replicas signing with the same SecretId share a
 * budget. The SecretId is hashed: Redis keys are visible to anyone with access to it.
 */
function accountKey (upstream: UpstreamSettings): string {
  if (upstream.provider === 'legacy') return upstream.credentials.appId
  return `v3-${createHash('sha256').update(upstream.credentials.secretId).digest('hex').slice(0, 16)}`
}
