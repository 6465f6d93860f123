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
  /** Drops every free buffer (the pool also does this by itself when idle). */
  clear: () => void
}

export interface UploadBuffersOptions {
  /** Free buffers kept at most; more are left to the garbage collector. */
  maxFree: number
  /** Free buffers are dropped after this long without a `take` or `recycle`, so an idle process gives its memory back. */
  idleMs: number
}

/** Sizes are rounded up to whole MiB, so uploads of slightly different sizes share buffers. */
const SIZE_STEP = 1024 * 1024

export function createUploadBuffers (options: UploadBuffersOptions): UploadBuffers {
  const free: Buffer[] = []
  // The backing stores handed out and not yet given back: only these are taken back, and only once.
  const lent = new WeakSet<ArrayBufferLike>()
  let freeBytes = 0

  const clear = (): void => {
    free.length = 0
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
      if (free.length >= options.maxFree) return
      const whole = Buffer.from(backing, 0, backing.byteLength)
      free.push(whole)
      freeBytes += whole.length
    },
    get freeBytes () { return freeBytes },
    clear
  }
}
