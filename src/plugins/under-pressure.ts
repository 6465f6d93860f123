import underPressure from '@fastify/under-pressure'
import fp from 'fastify-plugin'
import type { ConfigSlice } from '../config/load.js'
import { fusionError } from '../errors.js'

/**
 * Load shedding: when the event loop lags or memory passes its limit (sharp
 * jobs piling up, a burst of large uploads), new requests get 503 with
 * Retry-After before anything is read, rather than making every request slow.
 * Health routes are exempt: an orchestrator must still see the replica alive.
 */
const RETRY_AFTER_SECONDS = 2

/** The settings this plugin reads. */
export const underPressureSettings = [
  'PRESSURE_MAX_EVENT_LOOP_DELAY_MS', 'PRESSURE_MAX_RSS_BYTES', 'PRESSURE_MAX_HEAP_USED_BYTES', 'PRESSURE_SAMPLE_INTERVAL_MS'
] as const

export default fp<{ config: ConfigSlice<typeof underPressureSettings[number]> }>(async (app, { config }) => {
  await app.register(underPressure, {
    maxEventLoopDelay: config.PRESSURE_MAX_EVENT_LOOP_DELAY_MS,
    maxRssBytes: config.PRESSURE_MAX_RSS_BYTES,
    maxHeapUsedBytes: config.PRESSURE_MAX_HEAP_USED_BYTES,
    sampleInterval: config.PRESSURE_SAMPLE_INTERVAL_MS,
    retryAfter: RETRY_AFTER_SECONDS,
    pressureHandler: async (request, _reply, type) => {
      if (request.routeOptions.config.health === true) return
      throw fusionError('FUSION_SATURATED', { retryAfterSeconds: RETRY_AFTER_SECONDS, cause: new Error(`under pressure: ${type}`) })
    }
  })
}, { name: 'under-pressure' })

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A health route: never shed, never rate-limited. */
    health?: boolean
  }
}
