import type { Readable } from 'node:stream'
import accepts from 'accepts'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { ConfigSlice } from '../config/load.js'
import { fusionError, messageOf } from '../errors.js'
import type { FusionInput, PreparedFusion } from '../fusion/fusion.js'
import { payloadFingerprint } from '../idempotency/idempotency.js'
import { checkMultipartBoundary, readFusionInput } from '../intake/fusion-input.js'
import { JsonBody, readJsonBody } from '../intake/json-body.js'
import { cutOffBody, watchUpload } from '../intake/upload-watch.js'
import { firstPollSeconds, opaqueId, waitForJob } from '../jobs/job-line.js'
import { parsePrefer, type Preferences } from './prefer.js'
import { fuseRouteSchema } from '../schemas.js'
import { jobOwner, sendOutcome } from './answers.js'
import { linkSignals } from '../linked-signal.js'

const JSON_TYPE = 'application/json'
const IMAGE_TYPE = 'image/jpeg'

/** A place in the image pipeline, and the watch over the upload, held from before the body is read. */
interface Admitted {
  deadline: number
  /** Aborted when the client goes away before the answer is sent. */
  clientGone: AbortController
  /** Aborted, with the 408 to answer, when the upload is cut off: too slow, or still arriving at the deadline. */
  uploadCutOff: AbortSignal
  /** Gives the image-pipeline place back; safe to call more than once. */
  release: () => void
}

declare module 'fastify' {
  interface FastifyRequest {
    /** POST /fuse only: set before the body is read. */
    admitted: Admitted | null
  }
}

/** The settings this plugin reads. */
export const fuseRouteSettings = [
  'MAX_UPLOAD_BYTES', 'REQUEST_DEADLINE_MS', 'UPLOAD_MIN_BYTES_PER_SECOND', 'UPLOAD_RATE_GRACE_MS', 'QUEUE_PREFER_WAIT_MAX_SECONDS'
] as const

/**
 * POST /fuse: one photo and a template in, a fused picture out, as JSON
 * `{ requestId, imageUrl, expiresAt }` or `{ requestId, imageBase64 }`, or the
 * image bytes for `Accept: image/jpeg`. HTTP only: the fusion is src/fusion's.
 */
const fuseRoute: FastifyPluginAsync<{ config: ConfigSlice<typeof fuseRouteSettings[number]> }> = async (app, { config }) => {
  // Room for base64 (4/3 of the bytes, plus 3 % for `\/` escapes or line breaks some encoders add), a data: prefix and the short fields.
  const jsonBodyLimit = Math.ceil(config.MAX_UPLOAD_BYTES * 4 / 3 * 1.03) + 64 * 1024
  app.decorateRequest('admitted', null)

  // This route's JSON bodies (only this plugin's scope: other routes keep Fastify's parser) are read as they arrive,
  // the photo's base64 decoded into an upload buffer, as a form's photo is (src/intake/json-body.ts). It enforces the
  // body limit itself: Fastify applies `bodyLimit` only to the bodies it buffers.
  app.addContentTypeParser('application/json', async (request: FastifyRequest, payload: Readable) => await readJsonBody(payload, {
    contentLength: request.headers['content-length'],
    bodyLimit: jsonBodyLimit,
    maxImageBytes: config.MAX_UPLOAD_BYTES,
    buffers: app.imagePipeline.uploadBuffers,
    signal: request.admitted?.clientGone.signal
  }))

  app.post('/fuse', {
    bodyLimit: jsonBodyLimit,
    schema: fuseRouteSchema,
    // The schema documents the contract; src/intake validates, with the same codes for forms and JSON.
    validatorCompiler: () => () => true,
    // Per-client limits (plugins/rate-limit.ts) and the Idempotency-Key (plugins/idempotency.ts), before the body.
    config: { rateLimit: {}, idempotency: true },
    preParsing: async (request, reply, payload) => {
      // A form whose boundary no parser should search for is refused before it costs a place.
      checkMultipartBoundary(request.headers['content-type'])
      // A place in the image pipeline, within the client's share: refused unread (429 over the share, 503 when full).
      const admission = app.imagePipeline.admit(request.client.id)
      const cutOff = new AbortController()
      const admitted: Admitted = {
        deadline: Date.now() + config.REQUEST_DEADLINE_MS,
        clientGone: new AbortController(),
        uploadCutOff: cutOff.signal,
        release: admission.release
      }
      request.admitted = admitted
      // A slow upload, or one still arriving at the deadline, is cut off and answered 408, so a place is held only by a
      // client that is really sending.
      const watch = watchUpload(request.raw, {
        deadline: admitted.deadline,
        minBytesPerSecond: config.UPLOAD_MIN_BYTES_PER_SECOND,
        graceMs: config.UPLOAD_RATE_GRACE_MS
      }, (error) => { cutOff.abort(error) })
      reply.raw.once('close', () => {
        watch.stop()
        if (!reply.raw.writableFinished) admitted.clientGone.abort()
        admitted.release()
        // A JSON body read but never taken by the intake (refused before it, or the client gone first): its photo's
        // buffer goes back.
        if (request.body instanceof JsonBody) request.body.discard()
      })
      // A JSON body is read by this route's parser from what this returns; a form by the intake, from the raw request.
      return cutOffBody(payload, cutOff.signal)
    }
  }, async (request, reply) => {
    const wanted = accepts(request.raw).type([JSON_TYPE, IMAGE_TYPE])
    if (wanted === false) throw fusionError('FUSION_NOT_ACCEPTABLE')
    const wantsImage = wanted === IMAGE_TYPE
    const admitted = request.admitted!
    const read = await readFusionInput(request, config.MAX_UPLOAD_BYTES, app.imagePipeline.uploadBuffers, admitted.uploadCutOff)
    // The photo is one JPEG now (or refused): its buffer and its place go to the next upload. Both are safe to release twice.
    const photoReleased = (): void => {
      read.release()
      admitted.release()
    }
    const input: FusionInput = { ...read.input, resultType: wantsImage ? 'base64' : read.input.resultType }
    const prefer = parsePrefer(request.headers.prefer, config.QUEUE_PREFER_WAIT_MAX_SECONDS)
    const queued = prefer.respondAsync || prefer.wait !== undefined
    try {
      app.fusion.checkOptions(input.options)
      if (request.idempotency !== null) {
        const replay = await beginIdempotent(request, input, wantsImage, queued, admitted, photoReleased)
        if (replay !== undefined) return replay(reply)
      }
    } catch (error) {
      photoReleased()
      throw error
    }
    const context = {
      deadline: admitted.deadline,
      signal: admitted.clientGone.signal,
      finishUpstreamCall: request.idempotency !== null,
      stop: request.stopping,
      photoReleased,
      log: request.log
    }
    if (queued) return await enqueue(request, reply, await app.fusion.prepare(input, context), wantsImage, prefer)
    return await sendOutcome(reply, { ok: true, ...await app.fusion.fuse(input, context) }, wantsImage)
  })

  /**
   * Queues a checked and normalised photo (Prefer: respond-async): 202 with where to follow the job. With
   * `wait=N`, a job done within N seconds is answered as the request itself would have been.
   */
  async function enqueue (
    request: FastifyRequest, reply: FastifyReply, prepared: PreparedFusion, wantsImage: boolean, prefer: Preferences
  ): Promise<unknown> {
    const owner = jobOwner(request)
    const submitted = await app.jobLine.submit({
      prepared,
      answer: wantsImage ? 'image' : 'json',
      requestId: request.id,
      owner,
      clientId: opaqueId(request.client.id)
    })
    if (prefer.wait !== undefined && prefer.wait > 0) {
      // The job is queued: whatever ends the wait early (the service closing, its line failing to answer), the client
      // gets its id, so that a retry follows the job rather than queuing (and paying for) a second one. A line in this
      // process's memory ends with it: there the wait goes on while the service closes, for the answer itself.
      const closing = app.jobLine.mode() === 'local' ? undefined : app.shutdown.closing
      const watched = linkSignals([request.admitted!.clientGone.signal, request.stopping, closing])
      try {
        const done = await waitForJob(app.jobLine, submitted.jobId, owner, prefer.wait * 1000, watched.signal)
        if (done?.outcome !== undefined) {
          return await sendOutcome(reply.header('preference-applied', `wait=${prefer.wait}`), done.outcome, wantsImage)
        }
      } catch (error) {
        request.log.warn({ reason: messageOf(error) }, 'waiting on a queued job failed: answering 202')
      } finally {
        watched.unlink()
      }
    }
    const position = submitted.position
    return await reply.code(202)
      .header('location', `/fuse/jobs/${submitted.jobId}`)
      .header('preference-applied', 'respond-async')
      .header('retry-after', String(firstPollSeconds(submitted.etaSeconds)))
      .send({ jobId: submitted.jobId, status: 'queued', position, etaSeconds: submitted.etaSeconds, requestId: request.id })
  }

  /**
   * Claims the key, waits for the request already at work on it, or finds its stored reply. While it waits, this
   * request holds no image place and no upload buffer (its photo is copied out, and the copies of waiting requests
   * are bounded by the pipeline's capacity); it takes a place again only if the work becomes its own.
   */
  async function beginIdempotent (
    request: FastifyRequest, input: FusionInput, wantsImage: boolean, queued: boolean, admitted: Admitted,
    photoReleased: () => void
  ): Promise<((reply: FastifyReply) => Promise<unknown>) | undefined> {
    // A queued and a direct fusion are different requests under one key.
    const answer = `${wantsImage ? 'image' : input.resultType}${queued ? ':queued' : ''}`
    const fingerprint = payloadFingerprint({ ...input, answer, image: input.photo })
    let waited = false
    const stopping = request.stopping
    // A wait for the request at work on the key ends when the service stops in a hurry too.
    const watched = linkSignals([admitted.clientGone.signal, stopping])
    try {
      const begun = await request.idempotency!.begin(fingerprint, {
        deadline: admitted.deadline,
        signal: watched.signal,
        waiting: () => {
          request.log.info({ idempotency: { waiting: true } }, 'waiting for the request at work on this Idempotency-Key')
          if (waitingCopies >= app.imagePipeline.capacity) return
          waitingCopies++
          waited = true
          input.photo = Buffer.from(input.photo)
          photoReleased()
        }
      })
      if ('replay' in begun) {
        const { status, contentType, headers, body } = begun.replay
        // (The schema types only 200; a stored answer may be a final error.)
        return async (reply) =>
          await reply.code(status as 200).type(contentType).headers(headers ?? {}).header('idempotent-replayed', 'true').send(body)
      }
      if (waited) admitted.release = app.imagePipeline.admit(request.client.id).release
      return undefined
    } catch (error) {
      if (admitted.clientGone.signal.aborted) throw fusionError('FUSION_CLIENT_CLOSED_REQUEST', { cause: error })
      if (stopping?.aborted === true && error instanceof Error && error.name === 'AbortError') throw stopping.reason
      throw error
    } finally {
      watched.unlink()
      if (waited) waitingCopies--
    }
  }
  let waitingCopies = 0
}

export default fuseRoute
