import { createHash } from 'node:crypto'
import accepts from 'accepts'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { Config } from '../config/load.js'
import { fusionError, isFusionError } from '../errors.js'
import type { NormalizedImage } from '../images/normalize.js'
import { assertKnownApiKey, presentedApiKey } from '../plugins/rate-limit.js'
import { assertSupportedOptions, readJsonInput, readMultipartInput, type FusionInput } from '../intake/fusion-input.js'
import { parseIdempotencyKey, payloadFingerprint, type Begun, type Ownership } from '../idempotency/idempotency.js'
import type { FusionResult } from '../upstream/provider.js'
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
  /** The request's Idempotency-Key, when it sent one. */
  idempotencyKey?: string
  /** Held while this request does the work for its key; its reply is stored (or the key freed) as it is sent. */
  ownership?: Ownership
  /** When a URL answer's picture expires (epoch ms), for the idempotency store. */
  expiresAt?: number
}

const states = new WeakMap<FastifyRequest, RequestState>()

/**
 * POST /fuse: one photo and a template in, a fused picture out.
 * Answers JSON `{ requestId, imageUrl, expiresAt }` or `{ requestId, imageBase64 }`,
 * or the image bytes for `Accept: image/jpeg`. With an Idempotency-Key, the
 * answer is stored and replayed (src/idempotency).
 */
const fuseRoute: FastifyPluginAsync<{ config: Config }> = async (app, { config }) => {
  const upstream = app.fusionProvider.describe()
  const upstreamName = upstream.provider === 'v3' ? `API 3.0 ${upstream.action ?? ''} ${upstream.version ?? ''}` : 'the legacy API'
  // Room for base64 (4/3 of the bytes, plus 3 % for `\/` escapes or line breaks some encoders add), a data: prefix and the short fields.
  const jsonBodyLimit = Math.ceil(config.MAX_UPLOAD_BYTES * 4 / 3 * 1.03) + 64 * 1024

  app.post('/fuse', {
    bodyLimit: jsonBodyLimit,
    schema: {
      tags: ['fusion'],
      summary: 'Fuse a photo into a template',
      description: 'A photo and a template in; the fused picture out, as a URL, as base64, or (Accept: image/jpeg) as the image itself.',
      headers: {
        type: 'object',
        properties: {
          'idempotency-key': { type: 'string', minLength: 1, maxLength: 255, description: 'Makes the request safe to retry: a later request with the same key and the same payload gets the stored answer (marked `Idempotent-Replayed: true`) without a second fusion. A UUID per photo and template is right.' }
        }
      },
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
      assertKnownApiKey(request, config.clientApiKeys)
      const idempotencyKey = parseIdempotencyKey(request.headers['idempotency-key'])
      // A place in the image pipeline: when every place is taken, the upload is refused (503) unread.
      const admission = app.imagePipeline.admit()
      const state: RequestState = {
        deadline: Date.now() + config.REQUEST_DEADLINE_MS,
        clientGone: new AbortController(),
        release: admission.release,
        ...(idempotencyKey !== undefined ? { idempotencyKey } : {})
      }
      states.set(request, state)
      // An upload still arriving at the deadline is cut off, so a slow client cannot hold a place for long.
      const uploadTimer = setTimeout(() => { if (!request.raw.complete) request.raw.destroy() }, config.REQUEST_DEADLINE_MS)
      reply.raw.once('close', () => {
        clearTimeout(uploadTimer)
        if (!reply.raw.writableFinished) state.clientGone.abort()
        state.release()
        // An owned key is settled by onSend, which runs even for a client that left; its claim expires with the deadline anyway.
      })
      return payload
    },
    // The owner of an idempotency key records the reply exactly as it goes out, errors included.
    onSend: async (request, reply, payload) => {
      const ownership = states.get(request)?.ownership
      if (ownership !== undefined) await recordReply(request, reply, ownership, payload)
      return payload
    }
  }, async (request, reply) => {
    const wanted = accepts(request.raw).type([JSON_TYPE, IMAGE_TYPE])
    if (wanted === false) throw fusionError('FUSION_NOT_ACCEPTABLE')
    const wantsImage = wanted === IMAGE_TYPE
    const state = states.get(request)!

    const input = await readInput(request)
    const { projectId, modelId, options } = input
    const resultType = wantsImage ? 'base64' : input.resultType
    let normalized: NormalizedImage
    try {
      // Before the image work: an option the upstream would ignore or refuse is the client's to fix.
      assertSupportedOptions(options, app.fusionProvider.supportedOptions, upstreamName)
      if (state.idempotencyKey !== undefined) {
        const fingerprint = payloadFingerprint({ projectId, modelId, answer: wantsImage ? 'image' : resultType, options, image: input.image })
        const begun = await beginIdempotent(request, state, fingerprint)
        if ('replay' in begun) {
          app.metrics.idempotency.inc({ outcome: 'replayed' })
          // (The schema types only 200; a stored answer may be a final error.)
          return await reply.code(begun.replay.status as 200).type(begun.replay.contentType).header('idempotent-replayed', 'true').send(begun.replay.body)
        }
        state.ownership = begun.owner
      }
      normalized = await normalize(request, state, input.image)
    } finally {
      // sharp has finished with the upload (or never started on it): its buffer can take the next photo.
      // Not on the client leaving, which can happen while sharp still reads it.
      input.releaseImage()
    }
    // The photo is one JPEG now (the upload is no longer referenced): its place goes to the next upload.
    state.release()
    if (state.clientGone.signal.aborted) throw fusionError('FUSION_CLIENT_CLOSED_REQUEST')

    try {
      const result = await app.fusionProvider.fuse({
        projectId,
        modelId,
        // Image bytes are only ever taken from a base64 answer: the gateway never fetches URLs.
        resultType,
        options,
        image: normalized.jpeg,
        // A call made for an idempotency key runs to its end even if the client leaves: its answer is stored for the
        // client's retry, which would otherwise pay for a second fusion. Without a key, the client leaving cancels it.
        ...(state.ownership === undefined ? { signal: state.clientGone.signal } : {}),
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
      return await answer(request, reply, result, wantsImage, app.fusionProvider.resultUrlLifetimeSeconds)
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

  /** Reads the body: the fields, checked, and the upload's bytes. */
  async function readInput (request: FastifyRequest): Promise<FusionInput> {
    if (request.isMultipart()) return await readMultipartInput(request, config.MAX_UPLOAD_BYTES, app.imagePipeline.uploadBuffers)
    if (/^application\/json\b/i.test(request.headers['content-type'] ?? '')) {
      const input = readJsonInput(request.body, config.MAX_UPLOAD_BYTES)
      // The parsed body still holds the photo as base64: let it go with the upload.
      request.body = null
      return input
    }
    // Fastify parses text/plain by default; this route takes only forms and JSON.
    throw fusionError('FUSION_UNSUPPORTED_MEDIA_TYPE')
  }

  async function normalize (request: FastifyRequest, state: RequestState, upload: Buffer): Promise<NormalizedImage> {
    const normalized = await app.imagePipeline.normalize(upload, state.clientGone.signal)
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
    return normalized
  }

  /** Claims the key, waits for the request already at work on it, or finds its stored reply. */
  async function beginIdempotent (request: FastifyRequest, state: RequestState, fingerprint: string): Promise<Begun> {
    try {
      return await app.idempotency.begin(idempotencyScope(request, state.idempotencyKey!), fingerprint, state.deadline, state.clientGone.signal)
    } catch (error) {
      if (state.clientGone.signal.aborted) throw fusionError('FUSION_CLIENT_CLOSED_REQUEST', { cause: error })
      if (isFusionError(error) && error.code === 'FUSION_IDEMPOTENCY_KEY_REUSED') app.metrics.idempotency.inc({ outcome: 'reused' })
      if (isFusionError(error) && error.code === 'FUSION_IDEMPOTENCY_IN_PROGRESS') app.metrics.idempotency.inc({ outcome: 'in_progress' })
      throw error
    }
  }

  /**
   * Final answers are stored (a success, no face, an unknown template, a refused
   * photo); failures a retry may cure are not (429, 5xx: overload, the upstream's
   * transient faults, timeouts), so the retry can succeed.
   */
  async function recordReply (request: FastifyRequest, reply: FastifyReply, ownership: Ownership, payload: unknown): Promise<void> {
    const status = reply.statusCode
    const body = typeof payload === 'string' ? Buffer.from(payload) : Buffer.isBuffer(payload) ? payload : undefined
    const storable = body !== undefined && isFinalAnswer(status, body) && body.length <= config.IDEMPOTENCY_MAX_REPLY_BYTES
    try {
      if (!storable) {
        await ownership.release()
        app.metrics.idempotency.inc({ outcome: 'not_stored' })
        return
      }
      const expiresAt = states.get(request)?.expiresAt
      await ownership.complete({
        status,
        contentType: String(reply.getHeader('content-type') ?? JSON_TYPE),
        body,
        ...(expiresAt !== undefined ? { expiresAt } : {})
      })
      app.metrics.idempotency.inc({ outcome: 'stored' })
    } catch (error) {
      // The answer still goes out; only its replay is lost, and a retry does the work again.
      request.log.warn({ err: error }, 'could not store the idempotent reply')
    }
  }

  /**
   * Keys are the client's own: a known API key keeps its keys apart from
   * everyone else's. Anonymous clients share one space (an address is no
   * identity for a phone that changes networks between retries), where a random
   * key (a UUID) does not collide. Only a digest reaches the store.
   */
  function idempotencyScope (request: FastifyRequest, key: string): string {
    const apiKey = presentedApiKey(request)
    const owner = apiKey !== undefined && config.clientApiKeys.has(apiKey) ? apiKey : ''
    return createHash('sha256').update(owner).update('\n').update(key).digest('hex')
  }
}

/** Statuses under 500 that a retry may still change. */
const NEVER_STORED = new Set([408, 409, 425, 429, 499])
/** 4xx answers that depend on the moment, not on the request: a retry may succeed. */
const RETRYABLE_CODES = new Set(['FUSION_IMAGE_TIMEOUT'])

/**
 * A final answer: a success, or a refusal that the same request would get
 * again (no face, unknown template, a photo that does not decode). Not 5xx,
 * not 429, and not the refusals that depend on load.
 */
function isFinalAnswer (status: number, body: Buffer): boolean {
  if (status >= 500 || NEVER_STORED.has(status)) return false
  if (status < 400) return true
  try {
    return !RETRYABLE_CODES.has((JSON.parse(body.toString('utf8')) as { code?: string }).code ?? '')
  } catch {
    return false
  }
}

/**
 * The fused picture as the client asked for it. A URL answer says until when
 * the upstream keeps the picture (`expiresAt`), as the upstream documents it.
 */
async function answer (request: FastifyRequest, reply: FastifyReply, result: FusionResult, wantsImage: boolean, urlLifetimeSeconds: number): Promise<unknown> {
  if (wantsImage && result.resultType === 'base64') {
    const bytes = Buffer.from(result.imageBase64, 'base64')
    return await reply.type(sniffImageType(bytes)).send(bytes)
  }
  if (result.resultType === 'base64') return { requestId: request.id, imageBase64: result.imageBase64 }
  const expiresAt = Date.now() + urlLifetimeSeconds * 1000
  const state = states.get(request)
  if (state !== undefined) state.expiresAt = expiresAt
  return { requestId: request.id, imageUrl: result.imageUrl, expiresAt: new Date(expiresAt).toISOString() }
}

/** The upstream returns the material's own format (JPEG or PNG); say which. */
function sniffImageType (bytes: Buffer): string {
  if (bytes[0] === 0x89 && bytes[1] === 0x50) return 'image/png'
  return IMAGE_TYPE
}

export default fuseRoute
