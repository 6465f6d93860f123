import { timingSafeEqual } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'
import type { ConfigSlice } from '../config/load.js'
import { createMetrics, type Metrics } from '../metrics.js'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}

const started = Symbol('metrics.started')
declare module 'fastify' {
  interface FastifyRequest {
    [started]?: number
  }
}

/** The settings this plugin reads. */
export const metricsSettings = ['METRICS_TOKEN', 'METRICS_PORT', 'HOST'] as const

/**
 * Prometheus metrics. `/metrics` is served on the main port, or on a port of
 * its own (METRICS_PORT) so it can stay inside the cluster network; with
 * METRICS_TOKEN it asks for `Authorization: Bearer <token>`.
 */
export default fp<{ config: ConfigSlice<typeof metricsSettings[number]> }>(async (app, { config }) => {
  const metrics = createMetrics()
  app.decorate('metrics', metrics)

  // Each request is recorded once: with its status when answered, as 499 when its client left first.
  const inFlight = new WeakSet<object>()
  const finish = (request: FastifyRequest, status: number): void => {
    if (!inFlight.delete(request)) return
    metrics.httpInFlight.dec()
    const labels = { route: request.routeOptions.url ?? 'unmatched', method: request.method, status: String(status) }
    metrics.httpRequests.inc(labels)
    metrics.httpDuration.observe(labels, (performance.now() - (request[started] ?? performance.now())) / 1000)
  }
  app.addHook('onRequest', async (request, reply) => {
    request[started] = performance.now()
    inFlight.add(request)
    metrics.httpInFlight.inc()
    reply.raw.once('close', () => { if (!reply.raw.writableFinished) finish(request, 499) })
  })
  app.addHook('onResponse', async (request, reply) => { finish(request, reply.statusCode) })

  const authorized = (header: string | undefined): boolean => {
    if (config.METRICS_TOKEN === undefined) return true
    const expected = Buffer.from(`Bearer ${config.METRICS_TOKEN}`)
    const given = Buffer.from(header ?? '')
    return given.length === expected.length && timingSafeEqual(given, expected)
  }

  if (config.METRICS_PORT === 0) {
    app.get('/metrics', { config: { health: true }, logLevel: 'warn' }, async (request, reply) => {
      if (!authorized(request.headers.authorization)) {
        return await reply.code(401).header('www-authenticate', 'Bearer').send('unauthorized\n')
      }
      return await reply.type(metrics.registry.contentType).send(await metrics.registry.metrics())
    })
    return
  }

  let server: Server | undefined
  app.addHook('onListen', async () => {
    server = createServer((request, response) => {
      if (request.url !== '/metrics') return response.writeHead(404).end()
      if (!authorized(request.headers.authorization)) return response.writeHead(401, { 'www-authenticate': 'Bearer' }).end('unauthorized\n')
      metrics.registry.metrics().then(
        (text) => response.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        () => response.writeHead(500).end()
      )
    })
    await new Promise<void>((resolve, reject) => {
      server!.once('error', reject)
      server!.listen(config.METRICS_PORT, config.HOST, resolve)
    })
  })
  app.addHook('onClose', async () => {
    if (server !== undefined) await new Promise((resolve) => server!.close(resolve))
  })
}, { name: 'metrics' })
