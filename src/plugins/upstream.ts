import fp from 'fastify-plugin'
import type { Config } from '../config/load.js'
import { isFusionError } from '../errors.js'
import { BREAKER_STATE_VALUE } from '../metrics.js'
import { createLegacyClient } from '../upstream/legacy/client.js'
import type { FusionProvider } from '../upstream/provider.js'
import { createV3Client } from '../upstream/v3/client.js'
import { withBreaker } from '../upstream/circuit-breaker.js'
import { withRetries, type RetryingProvider } from '../upstream/retrying.js'

declare module 'fastify' {
  interface FastifyInstance {
    fusionProvider: RetryingProvider
  }
}

/**
 * The one client of the upstream (legacy or API 3.0, by FUSION_PROVIDER),
 * shared by every request and closed with the app. Without Tencent credentials
 * the entry point has filled the settings with the emulator's URL and account.
 */
export default fp<{ config: Config }>(async (app, { config }) => {
  const { upstream } = config
  const provider = upstream.provider

  const transport = {
    url: upstream.url,
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
    ? createV3Client({ ...transport, mode: upstream.mode, credentials: upstream.credentials, region: upstream.region, action: upstream.action, version: upstream.version })
    : createLegacyClient({ ...transport, mode: upstream.mode, credentials: upstream.credentials, signatureTtlSeconds: config.LEGACY_SIGNATURE_TTL_SECONDS })
  const guarded = withBreaker(client, {
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
  const retrying = withRetries(guarded, {
    retries: config.UPSTREAM_RETRIES,
    initialDelayMs: config.UPSTREAM_RETRY_DELAY_MS,
    maxDelayMs: Math.max(config.UPSTREAM_RETRY_DELAY_MS, 1_000),
    // A retry needs time for the call itself; a connect takes at most UPSTREAM_CONNECT_TIMEOUT_MS.
    minRemainingMs: config.UPSTREAM_CONNECT_TIMEOUT_MS,
    onRetry: (error) => {
      app.metrics.upstreamRetries.inc({ provider, code: isFusionError(error) ? error.upstreamCode ?? error.code : 'unknown' })
    }
  })
  app.metrics.breakerState.set({ provider }, 0)
  app.decorate('fusionProvider', retrying)
  app.addHook('onClose', async () => { await retrying.close() })
}, { name: 'upstream', dependencies: ['metrics'] })
