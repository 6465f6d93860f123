import fp from 'fastify-plugin'
import type { ConfigSlice } from '../config/load.js'
import { isFusionError } from '../errors.js'
import { BREAKER_STATE_VALUE } from '../metrics.js'
import { createLegacyClient } from '../upstream/legacy/client.js'
import type { FusionProvider } from '../upstream/provider.js'
import { createV3Client } from '../upstream/v3/client.js'
import { createCallPolicy } from '../upstream/chain.js'
import { createBreaker, type Breaker } from '../upstream/circuit-breaker.js'
import { createRetrying } from '../upstream/retrying.js'

/** The upstream's one client, and the breaker every call passes (its state is readiness). */
export interface Upstream {
  client: FusionProvider
  breaker: Breaker
}

declare module 'fastify' {
  interface FastifyInstance {
    upstream: Upstream
  }
}

/** The settings this plugin reads. */
export const upstreamSettings = [
  'upstream', 'LEGACY_SIGNATURE_TTL_SECONDS', 'UPSTREAM_BACKOFF_MS', 'UPSTREAM_BUDGET_MAX_LATE_MS',
  'UPSTREAM_RETRIES', 'UPSTREAM_RETRY_DELAY_MS',
  'UPSTREAM_BREAKER_FAILURE_RATIO', 'UPSTREAM_BREAKER_HALF_OPEN_SUCCESSES', 'UPSTREAM_BREAKER_MIN_CALLS',
  'UPSTREAM_BREAKER_OPEN_MS', 'UPSTREAM_BREAKER_WINDOW',
  'UPSTREAM_CONNECTIONS', 'UPSTREAM_CONNECT_TIMEOUT_MS', 'UPSTREAM_MAX_RESPONSE_BYTES', 'UPSTREAM_TIMEOUT_MS'
] as const

/**
 * The one client of the upstream (legacy or API 3.0, by FUSION_PROVIDER),
 * shared by every request and closed with the app, and the chain every one of
 * its calls passes (upstream/chain.ts): retries, the breaker, the shared budget. Without Tencent credentials
 * the entry point has filled the settings with the emulator's URL and account.
 */
export default fp<{ config: ConfigSlice<typeof upstreamSettings[number]> }>(async (app, { config }) => {
  const { upstream } = config
  const provider = upstream.provider

  const breaker = createBreaker({
    failureRatio: config.UPSTREAM_BREAKER_FAILURE_RATIO,
    minimumCalls: config.UPSTREAM_BREAKER_MIN_CALLS,
    windowSize: config.UPSTREAM_BREAKER_WINDOW,
    openMs: config.UPSTREAM_BREAKER_OPEN_MS,
    halfOpenSuccesses: config.UPSTREAM_BREAKER_HALF_OPEN_SUCCESSES,
    onStateChange: (state) => {
      app.metrics.breakerState.set({ provider }, BREAKER_STATE_VALUE[state])
      const log = state === 'open' ? app.log.warn.bind(app.log) : app.log.info.bind(app.log)
      log({ upstream: { breaker: state } }, `upstream circuit ${state}`)
    }
  })
  const retrying = createRetrying({
    retries: config.UPSTREAM_RETRIES,
    initialDelayMs: config.UPSTREAM_RETRY_DELAY_MS,
    maxDelayMs: Math.max(config.UPSTREAM_RETRY_DELAY_MS, 1_000),
    // A retry needs time for the call itself; a connect takes at most UPSTREAM_CONNECT_TIMEOUT_MS.
    minRemainingMs: config.UPSTREAM_CONNECT_TIMEOUT_MS,
    onRetry: (error) => {
      app.metrics.upstreamRetries.inc({ provider, code: isFusionError(error) ? error.upstreamCode ?? error.code : 'unknown' })
    }
  })
  const policy = createCallPolicy({
    retrying,
    breaker,
    budget: app.upstreamBudget,
    backOffMs: config.UPSTREAM_BACKOFF_MS,
    connectTimeoutMs: config.UPSTREAM_CONNECT_TIMEOUT_MS,
    maxLateMs: config.UPSTREAM_BUDGET_MAX_LATE_MS,
    onStaleSlot: () => { app.metrics.budgetStaleSlots.inc() },
    onBudgetWait: (waitedMs) => { app.metrics.budgetWait.observe(waitedMs / 1000) },
    onBudgetRefused: () => { app.metrics.budgetRefusals.inc() },
    onBackOff: () => { app.metrics.budgetBackOffs.inc() }
  })
  const transport = {
    url: upstream.url,
    policy,
    timeoutMs: config.UPSTREAM_TIMEOUT_MS,
    connectTimeoutMs: config.UPSTREAM_CONNECT_TIMEOUT_MS,
    connections: config.UPSTREAM_CONNECTIONS,
    maxResponseBytes: config.UPSTREAM_MAX_RESPONSE_BYTES,
    onCall: ({ action, ok, code, durationMs }: { action: string, ok: boolean, code: string, durationMs: number }) => {
      const outcome = ok ? 'success' : 'error'
      app.metrics.upstreamCalls.inc({ provider, action, outcome, code })
      app.metrics.upstreamDuration.observe({ provider, action, outcome }, durationMs / 1000)
    }
  }
  const client: FusionProvider = upstream.provider === 'v3'
    ? createV3Client({
      ...transport,
      mode: upstream.mode,
      credentials: upstream.credentials,
      region: upstream.region,
      action: upstream.action,
      version: upstream.version
    })
    : createLegacyClient({
      ...transport,
      mode: upstream.mode,
      credentials: upstream.credentials,
      signatureTtlSeconds: config.LEGACY_SIGNATURE_TTL_SECONDS
    })
  app.metrics.breakerState.set({ provider }, 0)
  app.decorate('upstream', { client, breaker })
  app.addHook('onClose', async () => {
    breaker.close()
    await client.close()
  })
}, { name: 'upstream', dependencies: ['metrics', 'upstream-budget'] })
