import { MessageChannel } from 'node:worker_threads'

/**
 * Reusable buffers for uploaded photos.
 *
 * A phone photo waits in the queue and then in sharp for a few hundred
 * milliseconds, long enough to outlive V8's young generation. Allocated anew
 * for every upload, each 3 MB buffer was promoted and its bytes counted as
 * external memory until the next full mark-compact, which then ran every few
 * photos: at 10 concurrent uploads, garbage collection cost more CPU per photo
 * than receiving and parsing the upload (bench/throughput.ts shows the split).
 * Reused, the same few buffers stay alive and there is nothing to collect.
 *
 * The rules that keep this safe: a buffer is released only once nothing reads
 * it any more (sharp has settled, or never started), never when the client
 * leaves; each loan is released at most once, so a late or repeated release
 * can never hand a buffer that is back in use to a second upload. A reused
 * buffer keeps an earlier photo's bytes past the new upload's length: only
 * `bytes.subarray(0, length)` is ever handed on.
 */
export interface UploadBuffers {
  /** A buffer of at least `size` bytes: a free one when one is large enough, else a new one. */
  take: (size: number) => UploadBuffer
  /** Bytes held in free buffers. */
  readonly freeBytes: number
  /** Buffers allocated so far (a reused one is not counted again). */
  readonly allocations: number
  /** Buffers taken and not given back yet. */
  readonly lent: number
  /** Frees every free buffer's memory and stops the pool's timer; buffers released later are freed at once. */
  close: () => void
}

export interface UploadBuffer {
  bytes: Buffer
  /** Gives the buffer back once nothing reads it. Only the first call counts. */
  release: () => void
}

export interface UploadBuffersOptions {
  /** Free buffers kept at most; beyond that, the one idle longest has its memory freed. */
  maxFree: number
  /**
   * Every period of this length, a free buffer that was given back before the period began and not used since has
   * its memory freed (so 1 to 2 periods after its last use): after a burst the pool shrinks back, and an idle process
   * holds none.
   */
  trimIntervalMs: number
}

/** Sizes are rounded up to whole MiB, so uploads of slightly different sizes share buffers. */
const SIZE_STEP = 1024 * 1024

/**
 * Gives buffers' memory back now, not at V8's next full collection (which an
 * idle process may not run for minutes): their backing stores are transferred
 * into a message that is never received, which detaches them, and closing the
 * channel drops the message and frees the memory. Only for buffers nothing
 * else holds: a view left over would read as empty. Should the transfer be
 * refused, the buffers are simply left to the garbage collector.
 */
function releaseNow (buffers: Buffer[]): void {
  if (buffers.length === 0) return
  const stores = buffers.map((buffer) => buffer.buffer as ArrayBuffer)
  const { port1, port2 } = new MessageChannel()
  try {
    port1.postMessage(stores, stores)
  } catch {
    // Left to the garbage collector.
  } finally {
    port1.close()
    port2.close()
  }
}

export function createUploadBuffers (options: UploadBuffersOptions): UploadBuffers {
  // In the order they were given back: the longest idle first.
  const free: Array<{ buffer: Buffer, period: number }> = []
  let allocations = 0
  let lent = 0
  let closed = false
  // Counts trims: a buffer given back in an earlier period and still free at a trim was not needed for a whole one.
  let period = 0

  const drop = (entries: Array<{ buffer: Buffer }>): void => { releaseNow(entries.map(({ buffer }) => buffer)) }
  const trimTimer = setInterval(() => {
    // The list is in the order buffers came back, so those from earlier periods come first.
    const current = free.findIndex((entry) => entry.period === period)
    drop(free.splice(0, current === -1 ? free.length : current))
    period++
  }, options.trimIntervalMs)
  trimTimer.unref()

  function give (buffer: Buffer): void {
    if (closed) return releaseNow([buffer])
    // Full: the buffer idle longest makes room.
    if (free.length >= options.maxFree) drop(free.splice(0, 1))
    free.push({ buffer, period })
  }

  return {
    take (size) {
      // The smallest free buffer that fits, so a large one stays for a large upload; among equals the one given back
      // last, so that spare buffers age out.
      let best = -1
      for (let index = 0; index < free.length; index++) {
        const candidate = free[index]!.buffer
        if (candidate.length >= size && (best === -1 || candidate.length <= free[best]!.buffer.length)) best = index
      }
      let buffer: Buffer
      if (best === -1) {
        // allocUnsafeSlow: a backing store of its own, never a slice of Node's shared small-buffer pool.
        buffer = Buffer.allocUnsafeSlow(Math.max(SIZE_STEP, Math.ceil(size / SIZE_STEP) * SIZE_STEP))
        allocations++
      } else {
        buffer = free.splice(best, 1)[0]!.buffer
      }
      let released = false
      lent++
      return {
        bytes: buffer,
        release () {
          if (released) return
          released = true
          lent--
          give(buffer)
        }
      }
    },
    get freeBytes () { return free.reduce((bytes, { buffer }) => bytes + buffer.length, 0) },
    get allocations () { return allocations },
    get lent () { return lent },
    close () {
      closed = true
      clearInterval(trimTimer)
      drop(free.splice(0))
    }
  }
}
