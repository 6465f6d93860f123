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
 * The rule that keeps this safe: a buffer is recycled only once nothing reads
 * it any more (sharp has settled, or never started), never when the client
 * leaves. A recycled buffer keeps an earlier photo's bytes past the new
 * upload's length; only `subarray(0, length)` views are ever handed on.
 */
export interface UploadBuffers {
  /** A buffer of at least `size` bytes: a free one when one is large enough, else a new one. */
  take: (size: number) => Buffer
  /**
   * Gives back a buffer from `take` (or any view of one) once nothing reads it.
   * Anything else, and a second recycle of the same buffer, is ignored.
   */
  recycle: (view: Buffer) => void
  /** Bytes held in free buffers. */
  readonly freeBytes: number
  /** Frees every free buffer's memory (the pool also does this by itself when idle). */
  clear: () => void
}

export interface UploadBuffersOptions {
  /** Free buffers kept at most; one given back beyond that has its memory freed. */
  maxFree: number
  /** Free buffers' memory is freed after this long without a `take` or `recycle`, so an idle process gives it back. */
  idleMs: number
}

/** Sizes are rounded up to whole MiB, so uploads of slightly different sizes share buffers. */
const SIZE_STEP = 1024 * 1024

/**
 * Gives buffers' memory back now, not at V8's next full collection (which an
 * idle process may not run for minutes): their backing stores are transferred
 * into a message that is never received, which detaches them, and closing the
 * channel drops the message and frees the memory. Only for buffers nothing
 * else holds: any view left over would read as empty.
 */
function releaseNow (buffers: Buffer[]): void {
  if (buffers.length === 0) return
  const stores = buffers.map((buffer) => buffer.buffer as ArrayBuffer)
  const { port1, port2 } = new MessageChannel()
  port1.postMessage(stores, stores)
  port1.close()
  port2.close()
}

export function createUploadBuffers (options: UploadBuffersOptions): UploadBuffers {
  const free: Buffer[] = []
  // The backing stores handed out and not yet given back: only these are taken back, and only once.
  const lent = new WeakSet<ArrayBufferLike>()
  let freeBytes = 0

  const clear = (): void => {
    releaseNow(free.splice(0))
    freeBytes = 0
  }
  const idleTimer = setTimeout(clear, options.idleMs)
  idleTimer.unref()

  return {
    take (size) {
      idleTimer.refresh()
      // The smallest free buffer that fits, so a large one stays for a large upload.
      let best = -1
      for (let index = 0; index < free.length; index++) {
        const candidate = free[index]!
        if (candidate.length >= size && (best === -1 || candidate.length < free[best]!.length)) best = index
      }
      let buffer: Buffer
      if (best === -1) {
        // allocUnsafeSlow: a backing store of its own, never a slice of Node's shared small-buffer pool.
        buffer = Buffer.allocUnsafeSlow(Math.max(SIZE_STEP, Math.ceil(size / SIZE_STEP) * SIZE_STEP))
      } else {
        buffer = free.splice(best, 1)[0]!
        freeBytes -= buffer.length
      }
      lent.add(buffer.buffer)
      return buffer
    },
    recycle (view) {
      const backing = view.buffer
      if (!lent.delete(backing)) return
      idleTimer.refresh()
      const whole = Buffer.from(backing, 0, backing.byteLength)
      if (free.length >= options.maxFree) return releaseNow([whole])
      free.push(whole)
      freeBytes += whole.length
    },
    get freeBytes () { return freeBytes },
    clear
  }
}
