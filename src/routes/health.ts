import type { Static } from '@sinclair/typebox'
import type { FastifyPluginAsync } from 'fastify'
import type { ConfigSlice } from '../config/load.js'
import { healthRouteSchemas, type Health, type Readiness } from '../schemas.js'

/** The settings this plugin reads. */
export const healthRouteSettings = ['READYZ_REQUIRES_REDIS'] as const

/**
 * GET /healthz: alive, and which upstream answers. Cheap: touches nothing remote. Each answer is typed by the schema
 * it is serialised with, so a field added to one and not the other fails the build rather than vanishing from it.
 */
const healthRoute: FastifyPluginAsync<{ config: ConfigSlice<typeof healthRouteSettings[number]> }> = async (app, { config }) => {
  app.get('/healthz', {
    config: { health: true },
    schema: healthRouteSchemas.healthz
  }, async (): Promise<Static<typeof Health>> => {
    const upstream = app.upstream.client.describe()
    return {
      status: 'ok',
      upstream,
      ...(upstream.mode === 'emulator'
        ? { warning: 'No Tencent credentials are configured: fusions are served by the built-in emulator, not by Tencent Cloud.' }
        : {})
    }
  })

  /**
   * GET /readyz: ready to take traffic, and in what state the shared stores
   * are. By default Redis being down does not make the replica unready: it
   * keeps serving with client limits open and the budget at its per-replica
   * share (a deliberate choice, see docs/configuration.md), and says so here;
   * if every replica went unready at once the gateway would have no backend
   * at all. READYZ_REQUIRES_REDIS=true makes it 503 instead.
   */
  app.get('/readyz', {
    config: { health: true },
    schema: healthRouteSchemas.readyz
  }, async (_request, reply): Promise<Static<typeof Readiness>> => {
    // Each component says its own state. An open circuit: this replica would only answer 503; let the gateway send
    // traffic elsewhere.
    const breaker = app.upstream.breaker.state()
    if (breaker === 'open') reply.code(503)
    const redisStatus = app.redis === undefined ? 'not configured' : app.redis.status === 'ready' ? 'ready' : 'unreachable'
    const redisBlocks = config.READYZ_REQUIRES_REDIS && redisStatus === 'unreachable'
    if (redisBlocks) reply.code(503)
    const budget = app.upstreamBudget.mode()
    const line = app.jobLine.mode()
    return {
      status: breaker === 'open' || redisBlocks ? 'not ready' : 'ready',
      upstreamBreaker: breaker,
      degraded: redisStatus === 'unreachable',
      redis: redisStatus,
      budget: budget === 'shared' ? 'shared' : budget === 'fallback' ? 'per-replica fallback' : 'local',
      clientLimits: app.redis === undefined ? 'local' : redisStatus === 'ready' ? 'shared' : 'fail open',
      // Without its Redis the line refuses new jobs (503): synchronous fusions still work.
      jobLine: line === 'down' ? 'unreachable' : line
    }
  })
}

export default healthRoute
