import accepts from 'accepts'
import type { FastifyPluginAsync } from 'fastify'
import type { Config } from '../config.js'
import { fusionError, isFusionError } from '../errors.js'
import { presentedApiKey } from '../plugins/rate-limit.js'
import type { Admission } from '../images/pipeline.js'
import { readJsonInput, readMultipartInput } from '../intake/fusion-input.js'

const JSON_TYPE = 'application/json'
const IMAGE_TYPE = 'image/jpeg'

/**
 * POST /fuse: one photo and a template in, a fused picture out.
 * Answers JSON `{ requestId, imageUrl | imageBase64 }`, or the image bytes for
 * `Accept: image/jpeg`.
 */
const admissions = new WeakMap<object, Admission>()
const deadlines = new WeakMap<object, number>()

const fuseRoute: FastifyPluginAsync<{ config: Config }> = async (app, { config }) => {
  // Room for base64 (4/3 of the bytes), a data: prefix and the short fields.
  const jsonBodyLimit = Math.ceil(config.MAX_UPLOAD_BYTES * 4 / 3) + 64 * 1024

  app.post('/fuse', {
    bodyLimit: jsonBodyLimit,
    // Per-client limits (plugins/rate-limit.ts), checked before the body is read.
    config: { rateLimit: {} },
    onRequest: async (request) => {
      deadlines.set(request, Date.now() + config.REQUEST_DEADLINE_MS)
      const key = presentedApiKey(request)
      if (key !== undefined && config.clientApiKeys.size > 0 && !config.clientApiKeys.has(key)) throw fusionError('FUSION_UNKNOWN_API_KEY')
    },
    // A place in the image pipeline is taken once the client limit passed and
    // before the body is read: when every place is taken, the upload is
    // refused (503) without reading it.
    preParsing: async (request, reply, payload) => {
      const admission = app.imagePipeline.admit()
      admissions.set(request, admission)
      // 'close' fires whether the answer was sent or the client went away.
      reply.raw.once('close', admission.release)
      return payload
    }
  }, async (request, reply) => {
    const wanted = accepts(request.raw).type([JSON_TYPE, IMAGE_TYPE])
    if (wanted === false) throw fusionError('FUSION_NOT_ACCEPTABLE')
    const wantsImage = wanted === IMAGE_TYPE

    let input
    if (request.isMultipart()) {
      input = await readMultipartInput(request, config.MAX_UPLOAD_BYTES)
    } else if (/^application\/json\b/i.test(request.headers['content-type'] ?? '')) {
      input = readJsonInput(request.body, config.MAX_UPLOAD_BYTES)
    } else {
      // Fastify parses text/plain by default; this route takes only forms and JSON.
      throw fusionError('FUSION_UNSUPPORTED_MEDIA_TYPE')
    }

    const normalized = await app.imagePipeline.normalize(input.image)
    // The photo is one JPEG now; the place is free for the next upload while this one waits upstream.
    admissions.get(request)?.release()
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

    // The client's disconnect cancels the wait and the upstream call: nobody would read the answer.
    const clientGone = new AbortController()
    const onClose = (): void => { if (!reply.raw.writableFinished) clientGone.abort() }
    reply.raw.once('close', onClose)
    try {
      const deadline = deadlines.get(request) ?? Date.now() + config.REQUEST_DEADLINE_MS
      const result = await app.fusionProvider.fuse({
        projectId: input.projectId,
        modelId: input.modelId,
        // Image bytes are only ever taken from a base64 answer: the gateway never fetches URLs.
        resultType: wantsImage ? 'base64' : input.resultType,
        image: normalized.jpeg,
        signal: clientGone.signal,
        deadline
      }, request.log, {
        // Every attempt, retries included, spends a slot of the shared budget, waiting no longer than the deadline allows.
        beforeAttempt: async (signal) => {
          const { waitedMs } = await app.upstreamBudget.acquire(input.projectId, signal, deadline - Date.now() - config.UPSTREAM_CONNECT_TIMEOUT_MS)
          if (waitedMs > 0) request.log.debug({ budget: { waitedMs } }, 'waited for the upstream budget')
        }
      })

      if (wantsImage && result.resultType === 'base64') {
        const bytes = Buffer.from(result.imageBase64, 'base64')
        return await reply.type(sniffImageType(bytes)).send(bytes)
      }
      return result.resultType === 'url'
        ? { requestId: request.id, imageUrl: result.imageUrl }
        : { requestId: request.id, imageBase64: result.imageBase64 }
    } catch (error) {
      // The upstream's frequency control: every replica pauses, not only this request.
      if (isFusionError(error) && error.code === 'FUSION_RATE_LIMITED') {
        const pauseMs = Math.max(config.UPSTREAM_BACKOFF_MS, (error.retryAfterSeconds ?? 0) * 1000)
        await app.upstreamBudget.backOff(pauseMs)
        // Honest: no call will go out before the pause ends.
        error.retryAfterSeconds = Math.max(error.retryAfterSeconds ?? 1, Math.ceil(pauseMs / 1000))
      }
      throw error
    } finally {
      reply.raw.off('close', onClose)
    }
  })
}

/** The upstream returns the material's own format (JPEG or PNG); say which. */
function sniffImageType (bytes: Buffer): string {
  if (bytes[0] === 0x89 && bytes[1] === 0x50) return 'image/png'
  return IMAGE_TYPE
}

export default fuseRoute
