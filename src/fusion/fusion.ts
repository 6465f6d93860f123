import { fusionError } from '../errors.js'
import { OVERLOAD_RETRY_AFTER_SECONDS, type ImagePipeline } from '../images/pipeline.js'
import { OPTION_FIELDS } from './fields.js'
import { linkSignals } from '../linked-signal.js'
import {
  apiName, type FusionOption, type FusionOptions, type FusionProvider, type FusionResult, type ResultType, type UpstreamLogger
} from '../upstream/provider.js'

/**
 * One fusion, whoever asks for it (the HTTP route, a queue worker, a test):
 * the photo is normalised by the image pipeline, then sent through the
 * upstream's chain (budget, breaker, retries, client). No framework here: the
 * caller gives validated input, a deadline, an abort signal and a logger, and
 * gets the result or a FusionError.
 */
export interface FusionInput {
  projectId: string
  modelId: string
  resultType: ResultType
  options: FusionOptions
  /** The photo as sent, any accepted format. */
  photo: Buffer
}

export interface FusionContext {
  /** Epoch ms by which the fusion must be done. */
  deadline: number
  /** Aborted when the caller gives up (a client that left): a photo still waiting for a job is never read. */
  signal: AbortSignal
  /**
   * The upstream call, once sent, runs to its end even if `signal` aborts: its answer is kept for a retry
   * (an Idempotency-Key), which would otherwise pay for a second fusion.
   */
  finishUpstreamCall?: boolean
  /**
   * Aborted when the service must stop in a hurry: a fusion that has not reached the upstream is refused at once with
   * this signal's reason; one whose upstream call is sent runs to its end, and its result is returned.
   */
  stop?: AbortSignal | null
  /** Runs before each upstream attempt goes out (see FusionRequest.beforeSend). */
  beforeSend?: () => Promise<void>
  /** Runs once the photo's bytes are no longer read (normalised, or refused): its buffer and place may go. */
  photoReleased?: () => void
  log: FusionLogger
}

export type FusionLogger = UpstreamLogger

export interface Fused {
  result: FusionResult
  /** Until when a URL result works (epoch ms), as the upstream documents it. */
  expiresAt?: number
}

/** A fusion whose photo is normalised: what a queued job keeps until the upstream is called. */
export interface PreparedFusion extends Omit<FusionInput, 'photo'> {
  /** The normalised photo, as the upstream receives it. */
  jpeg: Buffer
}

export interface Fusion {
  /** Refuses an option the configured upstream cannot honour (400), before any work. */
  checkOptions: (options: FusionOptions) => void
  /** Checks the options and normalises the photo: every refusal the client can fix, before anything is queued. */
  prepare: (input: FusionInput, context: FusionContext) => Promise<PreparedFusion>
  /** Calls the upstream with a prepared fusion, through its chain. */
  send: (prepared: PreparedFusion, context: FusionContext) => Promise<Fused>
  /** prepare, then send. */
  fuse: (input: FusionInput, context: FusionContext) => Promise<Fused>
}

export function createFusion (parts: { images: ImagePipeline, upstream: FusionProvider }): Fusion {
  const { images, upstream } = parts
  const described = upstream.describe()
  const upstreamName = apiName(described)

  function checkOptions (options: FusionOptions): void {
    for (const option of Object.keys(options) as FusionOption[]) {
      if (!upstream.supportedOptions.has(option)) {
        throw fusionError('FUSION_UNSUPPORTED_OPTION', { message: `\`${OPTION_FIELDS[option]}\` is not available with ${upstreamName}.` })
      }
    }
  }

  async function prepare (input: FusionInput, context: FusionContext): Promise<PreparedFusion> {
    const stop = context.stop ?? undefined
    try {
      checkOptions(input.options)
      stop?.throwIfAborted()
    } catch (error) {
      context.photoReleased?.()
      throw error
    }
    // The pipeline releases the photo when sharp has finished with it (or never started on it), which after a timeout
    // is later than its answer. Not on `signal`: sharp may still be reading it.
    const watched = linkSignals([context.signal, stop])
    const normalized = await images.normalize(input.photo, {
      signal: watched.signal,
      deadline: context.deadline,
      released: context.photoReleased
    }).catch((error: unknown) => {
      // The pipeline answers every abort of a waiting photo as the client's; say when it was the service's.
      if (stop?.aborted === true && !context.signal.aborted) throw stop.reason
      throw error
    }).finally(watched.unlink)
    context.log.info({
      image: {
        format: normalized.inputFormat,
        bytesIn: normalized.bytesIn,
        bytesOut: normalized.jpeg.length,
        width: normalized.width,
        height: normalized.height,
        quality: normalized.quality
      }
    }, 'image normalised')
    const jpeg = normalized.jpeg
    if (context.signal.aborted) throw fusionError('FUSION_CLIENT_CLOSED_REQUEST')
    stop?.throwIfAborted()
    // The image work used the request's time up: the upstream was never called, so it is not its timeout.
    if (Date.now() >= context.deadline) {
      throw fusionError('FUSION_OVERLOADED', {
        retryAfterSeconds: OVERLOAD_RETRY_AFTER_SECONDS,
        cause: new Error('no time left after the image work')
      })
    }
    return { projectId: input.projectId, modelId: input.modelId, resultType: input.resultType, options: input.options, jpeg }
  }

  async function send (prepared: PreparedFusion, context: FusionContext): Promise<Fused> {
    const result = await upstream.fuse({
      projectId: prepared.projectId,
      modelId: prepared.modelId,
      // Image bytes are only ever taken from a base64 answer: the gateway never fetches URLs.
      resultType: prepared.resultType,
      options: prepared.options,
      image: prepared.jpeg,
      ...(context.finishUpstreamCall === true ? {} : { signal: context.signal }),
      stop: context.stop ?? undefined,
      ...(context.beforeSend !== undefined ? { beforeSend: context.beforeSend } : {}),
      deadline: context.deadline
    }, context.log)
    return result.resultType === 'url'
      ? { result, expiresAt: Date.now() + upstream.resultUrlLifetimeSeconds * 1000 }
      : { result }
  }

  async function fuse (input: FusionInput, context: FusionContext): Promise<Fused> {
    return await send(await prepare(input, context), context)
  }

  return { checkOptions, prepare, send, fuse }
}
