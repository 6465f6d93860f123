import type { Socket } from 'node:net'

/** How long a connection refused mid-upload stays half-open after the answer went out. */
const LINGER_MS = 2_000

/**
 * A "lingering close" for connections whose request body was refused before
 * it was read to the end (413, 415, 503 before the body).
 *
 * Node destroys such a connection as soon as the answer is written. The client
 * is usually still sending, and closing a socket with unread bytes makes the
 * kernel send a reset. A reset makes the client's kernel drop whatever it
 * received but had not yet read, so a client that reads its socket a moment
 * late (a busy phone) loses our 413 and sees "connection reset" instead. Like
 * nginx, this half-closes instead: the answer and a FIN go out, nothing more
 * is read (the kernel's receive window bounds what the client can still push),
 * and the socket is destroyed LINGER_MS later, or at once when the server closes.
 */
export interface LingeringClose {
  /** Applies to the socket's next close, which Node makes after a `Connection: close` answer. */
  linger: (socket: Socket) => void
  /** Destroys every socket still lingering (on shutdown). */
  closeAll: () => void
}

export function createLingeringClose (): LingeringClose {
  const lingering = new Set<Socket>()
  return {
    linger (socket) {
      // Node's HTTP server calls destroySoon() once a `Connection: close` answer is written.
      socket.destroySoon = function lingeringDestroy (this: Socket): void {
        lingering.add(this)
        const timer = setTimeout(() => { this.destroy() }, LINGER_MS)
        this.once('close', () => {
          clearTimeout(timer)
          lingering.delete(this)
        })
        this.end()
      }
    },
    closeAll () {
      for (const socket of lingering) socket.destroy()
    }
  }
}
