import { availableParallelism } from 'node:os'
import sharp from 'sharp'
import { fusionError, isFusionError } from '../errors.js'
import { createJobGate, type Lease } from './job-gate.js'
import { decodeImage, inspectImage, type ImagePolicy, type NormalizedImage } from './normalize.js'
import { createUploadBuffers, type UploadBuffers } from './upload-buffers.js'

/**
 * Image work is almost all of a request's CPU, and decoding is most of its
 * memory. It runs at most `concurrency` jobs at once (one more than the cores
 * by default), so libuv's thread pool keeps a free slot for DNS, fs and zlib,
 * and their estimated decode memory together within `decodeMemoryBytes`; a
 * bounded number of photos may wait; anything beyond is refused before its body
 * is read, so overload becomes a fast 503 instead of a growing tail and a
 * growing heap. No wait outlasts the request's deadline, and no photo holds
 * its client past IMAGE_TIMEOUT_SECONDS (see normalize below).
 */
export interface ImagePipelineOptions {
  policy: ImagePolicy
  /** 0: one more than the CPUs the process may use (see imageConcurrency). */
  concurrency: number
  /** Photos that may wait for a free job slot. */
  queueLimit: number
  /** Places one client may hold at once; 0 or unset: a quarter of the capacity (see placesPerClient). */
  perClient?: number
  /** Estimated decode memory all running jobs may hold together; a photo estimated above it is refused (413). */
  decodeMemoryBytes: number
  /**
   * Sees every photo: the time of its job (or, refused before one, until refused), how long it waited for the job
   * (when it got to wait), its outcome (`ok` or the error code) and bytes in and out.
   */
  onJob?: (job: { durationMs: number, waitMs?: number, outcome: string, bytesIn: number, bytesOut: number }) => void
  /** Sees the jobs running and waiting, and their estimated decode memory, after every change. */
  onLoad?: (load: { running: number, waiting: number, decodeMemoryBytes: number }) => void
}

export interface Admission {
  /** Frees the place; safe to call more than once. */
  release: () => void
}

export interface NormalizeOptions {
  /** Aborts when the client leaves: a photo still waiting is refused at once and never read again. */
  signal?: AbortSignal | undefined
  /** Epoch ms: waiting, then working, past it is answered 503 FUSION_OVERLOADED. */
  deadline?: number | undefined
  /**
   * Runs once, when nothing reads the photo's bytes any more: at once for a photo refused before its job, else when
   * libvips has really finished with it, which can be after the answer (a timeout).
   */
  released?: (() => void) | undefined
}

export interface ImagePipeline {
  /**
   * Reserves a place for one photo of `client` (request.client.id), or refuses: 429 FUSION_TOO_MANY_UPLOADS when that
   * client already holds its share, else 503 FUSION_OVERLOADED when every place is taken.
   */
  admit: (client: string) => Admission
  /**
   * Inspects the photo (refusals from its header, its decode cost), waits for a job slot and its decode memory, then
   * decodes it. Answers by IMAGE_TIMEOUT_SECONDS once started, and by `deadline` in any case.
   */
  normalize: (input: Buffer, options?: NormalizeOptions) => Promise<NormalizedImage>
  /** Buffers for the uploads' bytes, reused once a photo is normalised (see upload-buffers.ts). */
  readonly uploadBuffers: UploadBuffers
  readonly concurrency: number
  readonly capacity: number
  /** The most places one client may hold at once. */
  readonly perClient: number
  readonly admitted: number
  /** Jobs running, photos waiting for one, and the estimated decode memory of the running. */
  readonly load: { running: number, waiting: number, decodeMemoryBytes: number }
}

/** Seconds a refused client should wait: one job's time, rounded up. */
export const OVERLOAD_RETRY_AFTER_SECONDS = 1
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
  // One libvips thread per photo, as the decode cost estimate assumes: the jobs running side by side use the cores.
  // More threads per photo would not add throughput, but each holds buffers as wide as the photo (a 16 000 px wide
  // PNG: 178 MiB on one thread, 512 on eight; bench/decode-memory.ts), and sharp's default, the host's cores, can be
  // dozens in a container allowed two.
  sharp.concurrency(1)
  const { policy } = options
  const concurrency = imageConcurrency(options.concurrency)
  const capacity = concurrency + options.queueLimit
  const perClient = placesPerClient(options.perClient ?? 0, capacity)
  let admitted = 0
  // Places held per client; a client holding none has no entry, so the map is as large as the clients in flight.
  const held = new Map<string, number>()
  const load = (): { running: number, waiting: number, decodeMemoryBytes: number } =>
    ({ running: gate.running, waiting: gate.waiting, decodeMemoryBytes: gate.memoryInUse })
  const gate = createJobGate({
    slots: concurrency,
    memoryBytes: options.decodeMemoryBytes,
    retryAfterSeconds: OVERLOAD_RETRY_AFTER_SECONDS,
    onChange: () => options.onLoad?.(load())
  })

  async function normalize (input: Buffer, { signal, deadline, released }: NormalizeOptions = {}): Promise<NormalizedImage> {
    let startedAt = performance.now()
    let waitMs: number | undefined
    const report = (outcome: string, bytesOut = 0): void => {
      const durationMs = performance.now() - startedAt
      options.onJob?.({ durationMs, ...(waitMs !== undefined ? { waitMs } : {}), outcome, bytesIn: input.length, bytesOut })
    }
    let work: Promise<NormalizedImage>
    try {
      // A job whose client has left never reads its buffer.
      if (signal?.aborted === true) throw fusionError('FUSION_CLIENT_CLOSED_REQUEST')
      const inspected = await inspectImage(input, policy)
      if (inspected.decodeCost > options.decodeMemoryBytes) {
        throw fusionError('FUSION_IMAGE_DECODE_TOO_LARGE', {
          message: `The photo would need about ${mebibytes(inspected.decodeCost)} MiB to decode; at most ` +
            `${mebibytes(options.decodeMemoryBytes)} MiB are available: send one with fewer pixels, or a JPEG.`
        })
      }
      const waitStartedAt = performance.now()
      let lease: Lease
      try {
        lease = await gate.acquire(inspected.decodeCost, { signal, deadline })
      } finally {
        waitMs = performance.now() - waitStartedAt
      }
      startedAt = performance.now()
      work = decodeImage(input, inspected, policy)
      // The slot and the memory stay taken, and the buffer lent, until libvips has really finished: a photo it could
      // not stop at the timeout still occupies them, so the budget counts what is in use, not what was answered.
      work.finally(() => {
        lease.release()
        released?.()
      }).catch(() => {})
    } catch (error) {
      released?.()
      report(isFusionError(error) ? error.code : 'error')
      throw error
    }
    try {
      const normalized = await answerBy(work, policy.timeoutSeconds * 1000, deadline)
      report('ok', normalized.jpeg.length)
      return normalized
    } catch (error) {
      report(isFusionError(error) ? error.code : 'error')
      throw error
    }
  }

  return {
    // Never more photos in hand than places, so never more free buffers worth keeping.
    uploadBuffers: createUploadBuffers({ maxFree: capacity, trimIntervalMs: UPLOAD_BUFFERS_TRIM_INTERVAL_MS }),
    concurrency,
    capacity,
    perClient,
    get admitted () { return admitted },
    get load () { return load() },
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
    normalize
  }
}

const mebibytes = (bytes: number): number => Math.ceil(bytes / (1024 * 1024))

/**
 * The job's result, or a refusal when it runs past `timeoutMs` (422 FUSION_IMAGE_TIMEOUT: the photo is too much work)
 * or past the request's deadline (503 FUSION_OVERLOADED: its wait for a job used the time). libvips checks its own
 * timeout only between output lines, and a progressive JPEG decodes every scan before the first line, so this timer is
 * what answers the client on time.
 */
async function answerBy (work: Promise<NormalizedImage>, timeoutMs: number, deadline: number | undefined): Promise<NormalizedImage> {
  const untilDeadline = deadline === undefined ? Infinity : deadline - Date.now()
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(timeoutMs <= untilDeadline
        ? fusionError('FUSION_IMAGE_TIMEOUT', { cause: new Error(`still decoding after ${timeoutMs} ms`) })
        : fusionError('FUSION_OVERLOADED', {
          retryAfterSeconds: OVERLOAD_RETRY_AFTER_SECONDS,
          cause: new Error('the request deadline came while its photo was being processed')
        }))
    }, Math.max(0, Math.min(timeoutMs, untilDeadline)))
  })
  try {
    return await Promise.race([work, late])
  } finally {
    clearTimeout(timer)
  }
}
