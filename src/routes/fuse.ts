import accepts from 'accepts'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { Config } from '../config.js'
import { fusionError, isFusionError } from '../errors.js'
import type { NormalizedImage } from '../images/normalize.js'
import { presentedApiKey } from '../plugins/rate-limit.js'
import { assertSupportedOptions, readJsonInput, readMultipartInput } from '../intake/fusion-input.js'
import type { FusionOptions, FusionResult, ResultType } from '../upstream/provider.js'
import { FuseAnswer, FuseForm, FuseJson, fuseErrorStatuses } from '../schemas.js'

const JSON_TYPE = 'application/json'
const IMAGE_TYPE = 'image/jpeg'

/** What one request carries from hook to handler. */
interface RequestState {
  /** Epoch ms by which the answer must be ready. */
  deadline: number
  /** Aborted when the client goes away before the answer is sent. */
  clientGone: AbortController
  /** Gives the image-pipeline place back; safe to call more than once. */
  release: () => void
}

const states = new WeakMap<FastifyRequest, RequestState>()

/**
 * POST /fuse: one photo and a template in, a fused picture out.
 * Answers JSON `{ requestId, imageUrl | imageBase64 }`, or the image bytes for
 * `Accept: image/jpeg`.
 */
const fuseRoute: FastifyPluginAsync<{ config: Config }> = async (app, { config }) => {
  // Room for base64 (4/3 of the bytes, plus 3 % for `\/` escapes or line breaks some encoders add), a data: prefix and the short fields.
  const upstream = app.fusionProvider.describe()
  const upstreamName = upstream.provider === 'v3' ? `API 3.0 ${upstream.action ?? ''} ${upstream.version ?? ''}` : 'the legacy API'
  const jsonBodyLimit = Math.ceil(config.MAX_UPLOAD_BYTES * 4 / 3 * 1.03) + 64 * 1024

  app.post('/fuse', {
    bodyLimit: jsonBodyLimit,
    schema: {
      tags: ['fusion'],
      summary: 'Fuse a photo into a template',
      description: 'A photo and a template in; the fused picture out, as a URL, as base64, or (Accept: image/jpeg) as the image itself.',
      body: { content: { 'multipart/form-data': { schema: FuseForm }, 'application/json': { schema: FuseJson } } },
      response: {
        200: {
          description: 'The fused picture.',
          content: {
            'application/json': { schema: FuseAnswer },
            'image/jpeg': { schema: { type: 'string', format: 'binary' } }
          }
        },
        ...Object.fromEntries(fuseErrorStatuses.map((status) => [status, { $ref: 'ErrorResponse#' }]))
      }
    },
    // The schemas above document the contract; src/intake validates, with the same codes for forms and JSON.
    validatorCompiler: () => () => true,
    // Per-client limits (plugins/rate-limit.ts), checked in onRequest, before anything below.
    config: { rateLimit: {} },
    // After the client limit passed (so even a refused key is counted) and before the body is read.
    preParsing: async (request, reply, payload) => {
      const key = presentedApiKey(request)
      if (key !== undefined && config.clientApiKeys.size > 0 && !config.clientApiKeys.has(key)) throw fusionError('FUSION_UNKNOWN_API_KEY')
      // A place in the image pipeline: when every place is taken, the upload is refused (503) unread.
      const admission = app.imagePipeline.admit()
      const state: RequestState = {
        deadline: Date.now() + config.REQUEST_DEADLINE_MS,
        clientGone: new AbortController(),
        release: admission.release
      }
      states.set(request, state)
      // An upload still arriving at the deadline is cut off, so a slow client cannot hold a place for long.
      const uploadTimer = setTimeout(() => { if (!request.raw.complete) request.raw.destroy() }, config.REQUEST_DEADLINE_MS)
      reply.raw.once('close', () => {
        clearTimeout(uploadTimer)
        if (!reply.raw.writableFinished) state.clientGone.abort()
        state.release()
      })
      return payload
    }
  }, async (request, reply) => {
    const wanted = accepts(request.raw).type([JSON_TYPE, IMAGE_TYPE])
    if (wanted === false) throw fusionError('FUSION_NOT_ACCEPTABLE')
    const wantsImage = wanted === IMAGE_TYPE
    const state = states.get(request)!

    const { projectId, modelId, resultType, options, normalized } = await intake(request, state)
    // The photo is one JPEG now (the upload is no longer referenced): its place goes to the next upload.
    state.release()
    if (state.clientGone.signal.aborted) throw fusionError('FUSION_CLIENT_CLOSED_REQUEST')

    try {
      const result = await app.fusionProvider.fuse({
        projectId,
        modelId,
        // Image bytes are only ever taken from a base64 answer: the gateway never fetches URLs.
        resultType: wantsImage ? 'base64' : resultType,
        options,
        image: normalized.jpeg,
        signal: state.clientGone.signal,
        deadline: state.deadline
      }, request.log, {
        // Every attempt, retries included, spends a slot of the shared budget, waiting no longer than the deadline allows.
        beforeAttempt: async (signal) => {
          try {
            const { waitedMs } = await app.upstreamBudget.acquire(projectId, signal, state.deadline - Date.now() - config.UPSTREAM_CONNECT_TIMEOUT_MS)
            app.metrics.budgetWait.observe(waitedMs / 1000)
            if (waitedMs > 0) request.log.debug({ budget: { waitedMs } }, 'waited for the upstream budget')
          } catch (error) {
            if (isFusionError(error) && error.code === 'FUSION_UPSTREAM_BUSY') app.metrics.budgetRefusals.inc()
            throw error
          }
        }
      })
      return await answer(reply, request.id, result, wantsImage)
    } catch (error) {
      // The upstream's frequency control: every replica pauses, not only this request.
      if (isFusionError(error) && error.code === 'FUSION_RATE_LIMITED' && config.UPSTREAM_BACKOFF_MS > 0) {
        const pauseMs = Math.max(config.UPSTREAM_BACKOFF_MS, (error.retryAfterSeconds ?? 0) * 1000)
        await app.upstreamBudget.backOff(pauseMs)
        app.metrics.budgetBackOffs.inc()
        // Honest: no call will go out before the pause ends.
        error.retryAfterSeconds = Math.max(error.retryAfterSeconds ?? 1, Math.ceil(pauseMs / 1000))
      }
      throw error
    }
  })

  /** Reads the body and normalises the photo; the upload buffer lives only inside this call. */
  async function intake (request: FastifyRequest, state: RequestState): Promise<{ projectId: string, modelId: string, resultType: ResultType, options: FusionOptions, normalized: NormalizedImage }> {
    let input
    if (request.isMultipart()) {
      input = await readMultipartInput(request, config.MAX_UPLOAD_BYTES)
    } else if (/^application\/json\b/i.test(request.headers['content-type'] ?? '')) {
      input = readJsonInput(request.body, config.MAX_UPLOAD_BYTES)
      // The parsed body still holds the photo as base64: let it go with the upload.
      request.body = null
    } else {
      // Fastify parses text/plain by default; this route takes only forms and JSON.
      throw fusionError('FUSION_UNSUPPORTED_MEDIA_TYPE')
    }
    // Before the image work: an option the upstream would ignore or refuse is the client's to fix.
    assertSupportedOptions(input.options, app.fusionProvider.supportedOptions, upstreamName)
    const normalized = await app.imagePipeline.normalize(input.image, state.clientGone.signal)
    request.log.info({
      image: {
        format: normalized.inputFormat,
        bytesIn: normalized.bytesIn,
        bytesOut: normalized.jpeg.length,
        width: normalized.width,
        height: normalized.height,
        quality: normalized.quality
      }
    }, 'image normalised')
    return { projectId: input.projectId, modelId: input.modelId, resultType: input.resultType, options: input.options, normalized }
  }
}

async function answer (reply: FastifyReply, requestId: string, result: FusionResult, wantsImage: boolean): Promise<unknown> {
  if (wantsImage && result.resultType === 'base64') {
    const bytes = Buffer.from(result.imageBase64, 'base64')
    return await reply.type(sniffImageType(bytes)).send(bytes)
  }
  return result.resultType === 'url'
    ? { requestId, imageUrl: result.imageUrl }
    : { requestId, imageBase64: result.imageBase64 }
}

/** The upstream returns the material's own format (JPEG or PNG); say which. */
function sniffImageType (bytes: Buffer): string {
  if (bytes[0] === 0x89 && bytes[1] === 0x50) return 'image/png'
  return IMAGE_TYPE
}

export default fuseRoute
