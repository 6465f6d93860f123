import { availableParallelism } from 'node:os'
import pLimit from 'p-limit'
import sharp from 'sharp'
import { fusionError, isFusionError } from '../errors.js'
import { normalizeImage, type ImagePolicy, type NormalizedImage } from './normalize.js'
import { createUploadBuffers, type UploadBuffers } from './upload-buffers.js'

/**
 * Image work is almost all of a request's CPU. It runs at most `concurrency`
 * jobs at once (one more than the cores by default), so libuv's thread pool keeps
 * a free slot for DNS, fs and zlib; a bounded number of photos may wait; anything
 * beyond is refused before its body is read, so overload becomes a fast 503
 * instead of a growing tail and a growing heap.
 */
export interface ImagePipelineOptions {
  policy: ImagePolicy
  /** 0: one more than the CPUs the process may use (see imageConcurrency). */
  concurrency: number
  /** Photos that may wait for a free job slot. */
  queueLimit: number
  /** Places one client may hold at once; 0 or unset: a quarter of the capacity (see placesPerClient). */
  perClient?: number
  /** Sees every job: its duration, outcome (`ok` or the error code) and bytes in and out. */
  onJob?: (job: { durationMs: number, outcome: string, bytesIn: number, bytesOut: number }) => void
}

export interface Admission {
  /** Frees the place; safe to call more than once. */
  release: () => void
}

export interface ImagePipeline {
  /**
   * Reserves a place for one photo of `client` (request.client.id), or refuses: 429 FUSION_TOO_MANY_UPLOADS when that
   * client already holds its share, else 503 FUSION_OVERLOADED when every place is taken.
   */
  admit: (client: string) => Admission
  /** Runs when a job slot is free; refused at once if `signal` aborts while it waits (the client left), and then never run. */
  normalize: (input: Buffer, signal?: AbortSignal) => Promise<NormalizedImage>
  /** Buffers for the uploads' bytes, reused once a photo is normalised (see upload-buffers.ts). */
  readonly uploadBuffers: UploadBuffers
  readonly concurrency: number
  readonly capacity: number
  /** The most places one client may hold at once. */
  readonly perClient: number
  readonly admitted: number
}

/** Seconds a refused client should wait: one job's time, rounded up. */
const OVERLOAD_RETRY_AFTER_SECONDS = 1
/** Every few seconds, free upload buffers that no upload needed meanwhile are let go. */
const UPLOAD_BUFFERS_TRIM_INTERVAL_MS = 5_000

/**
 * Image jobs at once: `configured`, or by default one more than the CPUs the process may use. The extra job keeps
 * every core at work while another job's result waits for the busy main thread (receiving and forwarding photos) or
 * its decode runs on a single thread: 89 % of sharp alone's throughput instead of 86 % on two cores
 * (bench/throughput.ts). Always at most UV_THREADPOOL_SIZE − 1 (4 by default), so libuv keeps a thread for DNS, files
 * and zlib.
 */
export function imageConcurrency (configured: number): number {
  if (configured > 0) return configured
  const threadPool = Number(process.env.UV_THREADPOOL_SIZE) > 0 ? Number(process.env.UV_THREADPOOL_SIZE) : 4
  return Math.max(1, Math.min(availableParallelism() + 1, threadPool - 1))
}

/**
 * A client's share of the places: `configured`, or by default a quarter of them (at least one). On two cores that is
 * 4 of 19: one client can still keep every job slot busy, yet it takes four clients to fill the pipeline, so one
 * address holding slow uploads leaves three quarters of the places to everyone else.
 */
export function placesPerClient (configured: number, capacity: number): number {
  return configured > 0 ? configured : Math.max(1, Math.floor(capacity / 4))
}

export function createImagePipeline (options: ImagePipelineOptions): ImagePipeline {
  // Every photo is new, so libvips' operation cache could only hold memory; and with upload buffers recycled, no
  // photo may ever be answered from an operation run on an earlier photo's bytes.
  sharp.cache(false)
  const concurrency = imageConcurrency(options.concurrency)
  const capacity = concurrency + options.queueLimit
  const limit = pLimit(concurrency)
  const perClient = placesPerClient(options.perClient ?? 0, capacity)
  let admitted = 0
  // Places held per client; a client holding none has no entry, so the map is as large as the clients in flight.
  const held = new Map<string, number>()

  return {
    // Never more photos in hand than places, so never more free buffers worth keeping.
    uploadBuffers: createUploadBuffers({ maxFree: capacity, trimIntervalMs: UPLOAD_BUFFERS_TRIM_INTERVAL_MS }),
    concurrency,
    capacity,
    perClient,
    get admitted () { return admitted },
    admit (client) {
      const holding = held.get(client) ?? 0
      // The client's own share first: that refusal is about what it does, and it holds even when there is room.
      if (holding >= perClient) throw fusionError('FUSION_TOO_MANY_UPLOADS', { retryAfterSeconds: OVERLOAD_RETRY_AFTER_SECONDS })
      if (admitted >= capacity) throw fusionError('FUSION_OVERLOADED', { retryAfterSeconds: OVERLOAD_RETRY_AFTER_SECONDS })
      admitted++
      held.set(client, holding + 1)
      let released = false
      return {
        release () {
          if (!released) {
            released = true
            admitted--
            const left = (held.get(client) ?? 1) - 1
            if (left > 0) held.set(client, left)
            else held.delete(client)
          }
        }
      }
    },
    normalize: async (input, signal) => {
      let started = false
      const job = limit(async () => {
        // Checked before the photo is touched: a job whose client has left never reads its buffer.
        if (signal?.aborted === true) throw fusionError('FUSION_CLIENT_CLOSED_REQUEST')
        started = true
        const startedAt = performance.now()
        try {
          const normalized = await normalizeImage(input, options.policy)
          options.onJob?.({
            durationMs: performance.now() - startedAt,
            outcome: 'ok',
            bytesIn: input.length,
            bytesOut: normalized.jpeg.length
          })
          return normalized
        } catch (error) {
          options.onJob?.({
            durationMs: performance.now() - startedAt,
            outcome: isFusionError(error) ? error.code : 'error',
            bytesIn: input.length,
            bytesOut: 0
          })
          throw error
        }
      })
      if (signal === undefined) return await job
      // A client that leaves while its photo waits is answered now, not when the queue reaches it, so its upload's
      // buffer is given back at once; a job already running is waited for, as sharp is reading the buffer.
      return await new Promise<NormalizedImage>((resolve, reject) => {
        const onAbort = (): void => { if (!started) reject(fusionError('FUSION_CLIENT_CLOSED_REQUEST')) }
        signal.addEventListener('abort', onAbort, { once: true })
        if (signal.aborted) onAbort()
        job.then(resolve, reject).finally(() => { signal.removeEventListener('abort', onAbort) })
      })
    }
  }
}
