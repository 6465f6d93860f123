import { randomUUID } from 'node:crypto'
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { sliceOf, type Config, type LoadedConfig } from './config/load.js'
import { errorAnswer, fusionError, isFusionError, logLevelOf, type ErrorCode, type FusionError } from './errors.js'
import { excerpt } from './excerpt.js'
import { fieldRefusal } from './fusion/fields.js'
import { fileTooLarge } from './intake/upload-limit.js'
import { createLingeringClose } from './lingering-close.js'
import { loggerOptions, withoutJobIds } from './logger.js'
import { createRouteMethods } from './route-methods.js'
import clientIdentityPlugin, { clientIdentitySettings } from './plugins/client-identity.js'
import demoPagePlugin, { demoPageSettings } from './plugins/demo-page.js'
import emulatorPicturesPlugin from './plugins/emulator-pictures.js'
import fusionPlugin from './plugins/fusion.js'
import idempotencyPlugin, { idempotencySettings } from './plugins/idempotency.js'
import jobLinePlugin, { jobLineSettings } from './plugins/job-line.js'
import imagePipelinePlugin, { imagePipelineSettings } from './plugins/image-pipeline.js'
import metricsPlugin, { metricsSettings } from './plugins/metrics.js'
import multipartPlugin, { multipartSettings } from './plugins/multipart.js'
import openapiPlugin from './plugins/openapi.js'
import rateLimitPlugin, { rateLimitSettings } from './plugins/rate-limit.js'
import redisPlugin, { redisSettings } from './plugins/redis.js'
import shutdownPlugin from './plugins/shutdown.js'
import underPressurePlugin, { underPressureSettings } from './plugins/under-pressure.js'
import upstreamBudgetPlugin, { upstreamBudgetSettings } from './plugins/upstream-budget.js'
import upstreamPlugin, { upstreamSettings } from './plugins/upstream.js'
import fuseRoute, { fuseRouteSettings } from './routes/fuse.js'
import fuseJobsRoute from './routes/fuse-jobs.js'
import healthRoute, { healthRouteSettings } from './routes/health.js'
import templatesRoute, { templatesRouteSettings } from './routes/templates.js'
import { isComplete } from './upstream/settings.js'
import type { DestinationStream } from 'pino'

export interface BuildOptions {
  /** Where logs go; tests capture them here. Defaults to stdout. */
  logStream?: DestinationStream
}

// A request id from the gateway in front is kept when it is safe to log and echo.
const INCOMING_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** Errors raised by Fastify and @fastify/multipart, as our codes. */
const FRAMEWORK_ERRORS: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'FUSION_UNSUPPORTED_MEDIA_TYPE',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'FUSION_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_BODY_TOO_LARGE: 'FUSION_BODY_TOO_LARGE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'FUSION_MALFORMED_BODY',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'FUSION_MALFORMED_BODY',
  FST_ERR_CTP_INVALID_JSON_BODY: 'FUSION_MALFORMED_BODY',
  FST_REQ_FILE_TOO_LARGE: 'FUSION_FILE_TOO_LARGE',
  FST_FILES_LIMIT: 'FUSION_TOO_MANY_FILES',
  FST_PARTS_LIMIT: 'FUSION_TOO_MANY_PARTS',
  FST_FIELDS_LIMIT: 'FUSION_TOO_MANY_PARTS',
  FST_PROTO_VIOLATION: 'FUSION_UNKNOWN_FIELD',
  FST_INVALID_JSON_FIELD_ERROR: 'FUSION_INVALID_FIELD',
  // Raised when the body ends early; a client that is really gone is caught before this table.
  FST_MP_PREMATURE_CLOSE: 'FUSION_MALFORMED_BODY'
}

export async function buildApp (loaded: Config | LoadedConfig, options: BuildOptions = {}): Promise<FastifyInstance> {
  if (!isComplete(loaded.upstream)) {
    throw new Error('buildApp: the upstream settings have no URL or credentials. Without Tencent credentials the entry ' +
      'point completes them with the emulator before building the app (src/server.ts); do the same.')
  }
  const config = loaded as Config
  const serverOptions: FastifyServerOptions = {
    logger: loggerOptions(config.LOG_LEVEL, options.logStream),
    requestIdHeader: false,
    genReqId: (raw) => {
      const incoming = raw.headers['x-request-id']
      return typeof incoming === 'string' && INCOMING_REQUEST_ID.test(incoming) ? incoming : randomUUID()
    },
    // Slow or stalled uploads must not hold a connection forever.
    connectionTimeout: 120_000,
    requestTimeout: 120_000,
    keepAliveTimeout: 10_000,
    ajv: { customOptions: { removeAdditional: false } },
    // While closing, requests already in flight are finished and idle connections closed; a request arriving on a
    // kept-alive connection meanwhile is refused by the shutdown plugin, in the error shape (Fastify's own 503 has none).
    return503OnClosing: false,
    // Only the listed proxies' X-Forwarded-For is believed; anyone else's is ignored.
    trustProxy: config.trustProxy.length > 0 ? config.trustProxy : false
  }
  const app = Fastify(serverOptions)

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
  })

  const lingeringClose = createLingeringClose()
  app.addHook('preClose', async () => { lingeringClose.closeAll() })

  app.setErrorHandler(async (error: FastifyError, request, reply) => {
    const socket = request.raw.socket as { destroyed?: boolean } | null
    const mapped = toFusionError(error, socket === null || socket.destroyed === true, config.MAX_UPLOAD_BYTES)
    request.errorCode = mapped.code
    logAnswer(request.log, error, mapped)
    if (mapped.retryAfterSeconds !== undefined) reply.header('retry-after', String(mapped.retryAfterSeconds))
    // An upload refused before it was read to the end: close the connection
    // rather than leave unread bytes in front of the next request on it.
    if (!request.raw.complete) {
      reply.header('connection', 'close')
      // Closed without resetting, so a client still sending reads the answer (src/lingering-close.ts).
      if (request.raw.socket !== null) lingeringClose.linger(request.raw.socket)
    }
    return await reply.code(mapped.statusCode).send(errorAnswer(mapped, request.id))
  })

  // Every route's path and methods, for the not-found handler below (routes are registered after this hook).
  const routeMethods = createRouteMethods()
  app.addHook('onRoute', (route) => { routeMethods.add(route.url, route.method) })

  await app.register(openapiPlugin)
  await app.register(metricsPlugin, { config: sliceOf(config, metricsSettings) })
  await app.register(shutdownPlugin)
  await app.register(underPressurePlugin, { config: sliceOf(config, underPressureSettings) })
  await app.register(redisPlugin, { config: sliceOf(config, redisSettings) })
  await app.register(clientIdentityPlugin, { config: sliceOf(config, clientIdentitySettings) })
  await app.register(rateLimitPlugin, { config: sliceOf(config, rateLimitSettings) })

  // Through the error handler above, so a 404 or 405 has the same shape as every other error.
  // Under the client's rate limit too: probing for paths and methods is limited like calling them.
  app.setNotFoundHandler({ preHandler: app.rateLimit() }, async (request, reply) => {
    const path = request.url.split('?')[0] ?? ''
    // A known path asked with another method (GET /fuse): 405, and Allow says which methods it takes.
    const allowed = routeMethods.allowed(path)
    if (allowed.length > 0) {
      reply.header('allow', allowed.join(', '))
      throw fusionError('FUSION_METHOD_NOT_ALLOWED', {
        message: `${excerpt(path, 100)} does not take ${excerpt(request.method, 20)}: use ${allowed.slice(0, -1).join(', ')}` +
          `${allowed.length > 1 ? ' or ' : ''}${allowed.at(-1)!}.`
      })
    }
    throw fusionError('FUSION_NOT_FOUND', { message: `No route for ${request.method} ${excerpt(path, 100)}.` })
  })

  await app.register(multipartPlugin, { config: sliceOf(config, multipartSettings) })
  await app.register(imagePipelinePlugin, { config: sliceOf(config, imagePipelineSettings) })
  await app.register(upstreamBudgetPlugin, { config: sliceOf(config, upstreamBudgetSettings) })
  await app.register(upstreamPlugin, { config: sliceOf(config, upstreamSettings) })
  await app.register(emulatorPicturesPlugin)
  await app.register(fusionPlugin)
  await app.register(idempotencyPlugin, { config: sliceOf(config, idempotencySettings) })
  await app.register(healthRoute, { config: sliceOf(config, healthRouteSettings) })
  await app.register(jobLinePlugin, { config: sliceOf(config, jobLineSettings) })
  await app.register(fuseRoute, { config: sliceOf(config, fuseRouteSettings) })
  await app.register(fuseJobsRoute)
  await app.register(templatesRoute, { config: sliceOf(config, templatesRouteSettings) })
  await app.register(demoPagePlugin, { config: sliceOf(config, demoPageSettings) })
  return app
}

/**
 * One line per error answer, at the level the catalogue gives its code: a refusal that protects the service, or the
 * client's own mistake, at info; an unwell upstream at warn, with its code; our own faults at error. Only an internal
 * error carries the stack: for every other answer the code says what happened, and a stack under load is only noise.
 */
function logAnswer (log: FastifyBaseLogger, error: FastifyError, mapped: FusionError): void {
  if (mapped.code === 'FUSION_INTERNAL_ERROR') {
    log.error({ err: error, statusCode: mapped.statusCode, code: mapped.code }, 'request failed')
    return
  }
  const level = logLevelOf(mapped.code)
  const cause = mapped.cause instanceof Error ? mapped.cause : undefined
  log[level]({
    statusCode: mapped.statusCode,
    code: mapped.code,
    upstreamCode: mapped.upstreamCode,
    // Our messages quote clients by excerpts only; a library's may quote a whole header (Unsupported Media Type: …).
    // A 404's or 405's message quotes the path, which may hold a job's id.
    reason: withoutJobIds(isFusionError(error) ? error.message : excerpt(error.message, 200)),
    // What lies under an upstream failure (a socket error's code, "HTTP 502, an HTML page"): ours, never the client's bytes.
    ...(level !== 'info' && cause !== undefined ? { cause: { message: cause.message.slice(0, 200), code: codeOf(cause) } } : {})
  }, mapped.statusCode === 499 ? 'client closed the request' : level === 'info' ? 'request refused' : 'request failed')
}

function codeOf (error: Error): string | undefined {
  const code = (error as { code?: unknown }).code
  return typeof code === 'string' ? code : undefined
}

function toFusionError (error: FastifyError, clientGone: boolean, maxUploadBytes: number): FusionError {
  // Nobody is left to read the answer: whatever failed, it is logged as 499.
  if (clientGone) return fusionError('FUSION_CLIENT_CLOSED_REQUEST', { cause: error })
  if (isFusionError(error)) return error
  // Fastify's schema validation, in the same words as the intake's.
  if (error.validation !== undefined) {
    return fieldRefusal(error.validation[0], error.validationContext === 'querystring' ? 'query parameter' : 'field', error)
  }
  const known = FRAMEWORK_ERRORS[error.code]
  // The multipart parser's own size refusal says the limit too, as the intake's does.
  if (known === 'FUSION_FILE_TOO_LARGE') return Object.assign(fileTooLarge(maxUploadBytes), { cause: error })
  if (known !== undefined) return fusionError(known, { cause: error })
  const status = error.statusCode ?? 500
  // Parser errors (JSON syntax errors and the like) carry a 4xx; busboy's are named in src/intake.
  if (status >= 400 && status < 500) {
    return fusionError(status === 413 ? 'FUSION_BODY_TOO_LARGE' : 'FUSION_MALFORMED_BODY', { cause: error })
  }
  return fusionError('FUSION_INTERNAL_ERROR', { cause: error })
}
