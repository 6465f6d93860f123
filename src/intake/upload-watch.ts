import type { IncomingMessage } from 'node:http'
import { Readable } from 'node:stream'
import { fusionError, type FusionError } from '../errors.js'

/**
 * Slow uploads. A request admitted to the image pipeline holds a place while its body arrives, so a client trickling
 * bytes could hold places for nothing. Like Apache's mod_reqtimeout `MinRate`, each byte received buys
 * 1 / `minBytesPerSecond` seconds past a grace period: an upload that falls behind is cut off with
 * 408 FUSION_UPLOAD_TOO_SLOW, and one still arriving at the request deadline with 408 FUSION_UPLOAD_TIMEOUT.
 *
 * Cutting off answers, it does not reset: `cut` receives the error, the reader of the body fails with it, and the one
 * error handler answers with `Connection: close` and a lingering close (src/lingering-close.ts), so the client reads
 * why while it is still sending.
 */
export interface UploadWatchOptions {
  /** Epoch ms: an upload still arriving then is cut off. */
  deadline: number
  /** 0: no minimum rate, only the deadline. */
  minBytesPerSecond: number
  graceMs: number
}

/** Checks are timed to when the upload would fall behind, but never closer together than this. */
const CHECK_FLOOR_MS = 200

export function watchUpload (
  request: IncomingMessage, options: UploadWatchOptions, cut: (error: FusionError) => void
): { stop: () => void } {
  const socket = request.socket as IncomingMessage['socket'] | null
  // Bytes read from the socket since now: the body, give or take the read that brought the headers. (Counting on the
  // body stream itself would need a 'data' listener, which would start it flowing before the multipart parser is
  // piped to it.)
  const counted = typeof socket?.bytesRead === 'number' && options.minBytesPerSecond > 0
  const baseline = counted ? socket.bytesRead : 0
  const startedAt = Date.now()
  let timer: NodeJS.Timeout | undefined
  const check = (): void => {
    timer = undefined
    if (request.complete || socket?.destroyed === true) return
    const now = Date.now()
    if (now >= options.deadline) return cut(fusionError('FUSION_UPLOAD_TIMEOUT'))
    const allowedUntil = counted ? startedAt + options.graceMs + (socket.bytesRead - baseline) * 1000 / options.minBytesPerSecond : Infinity
    if (now >= allowedUntil) return cut(fusionError('FUSION_UPLOAD_TOO_SLOW'))
    timer = setTimeout(check, Math.max(CHECK_FLOOR_MS, Math.min(allowedUntil, options.deadline) - now))
  }
  timer = setTimeout(check, Math.max(0, Math.min(counted ? options.graceMs : Infinity, options.deadline - startedAt)))
  return {
    stop () {
      clearTimeout(timer)
      timer = undefined
    }
  }
}

/**
 * The body as the route's JSON parser reads it, failing with `cutOff`'s reason when the upload is cut off. It
 * takes nothing from `source` until it is read itself, so for a form, which the multipart intake reads from the raw
 * request, it stays idle and never competes for the bytes. At the cut-off it stops reading: the error handler closes
 * the connection.
 */
export function cutOffBody (source: Readable, cutOff: AbortSignal): Readable {
  let reading = false
  const onData = (chunk: Buffer): void => { if (!body.push(chunk)) source.pause() }
  const onEnd = (): void => { body.push(null) }
  const onError = (error: Error): void => { body.destroy(error) }
  const body = new Readable({
    read () {
      if (reading) {
        source.resume()
        return
      }
      reading = true
      if (source.readableEnded) return onEnd()
      source.on('data', onData)
      source.once('end', onEnd)
      source.once('error', onError)
    },
    destroy (error, callback) {
      cutOff.removeEventListener('abort', onCutOff)
      source.removeListener('data', onData)
      source.removeListener('end', onEnd)
      source.removeListener('error', onError)
      // Cut off or failed: what is still arriving stays unread until the connection closes.
      if (error !== null) source.pause()
      callback(error)
    }
  })
  // A parser that gave up on the body (over its limit) stops listening; a cut-off after that must not throw.
  body.on('error', () => {})
  const onCutOff = (): void => { if (reading) body.destroy(cutOff.reason as Error) }
  cutOff.addEventListener('abort', onCutOff, { once: true })
  return body
}
