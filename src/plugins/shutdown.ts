import fp from 'fastify-plugin'
import { fusionError } from '../errors.js'

/**
 * Stopping, and stopping in a hurry. The first SIGTERM closes the app gracefully (src/server.ts): every request
 * already received is finished, and its answer closes its connection; a request that arrives meanwhile (on a
 * connection opened before) is answered at once with 503 FUSION_SHUTTING_DOWN. A second one asks for haste: `hurry()` aborts
 * each request's `stopping` signal, so whatever has not reached the upstream yet (a photo waiting for an image job, a
 * wait for the upstream budget, a retry, a wait on another request's Idempotency-Key) is answered at once with 503
 * FUSION_SHUTTING_DOWN, and an upload still arriving as soon as its body is in. An upstream call already sent does not
 * watch this signal: it runs to its end and its answer is delivered, as it may already be billed.
 */
export interface Shutdown {
  /** Aborts every request's `stopping` signal (and those of requests still to come); returns how many were in flight. */
  hurry: () => number
  readonly hurried: boolean
  /** Aborted once the service starts closing (the first signal): waits that only spare a client a poll end then. */
  readonly closing: AbortSignal
}

declare module 'fastify' {
  interface FastifyInstance {
    shutdown: Shutdown
  }
  interface FastifyRequest {
    /** Aborted, with a FUSION_SHUTTING_DOWN error as its reason, when the service must stop in a hurry. */
    stopping: AbortSignal | null
  }
}

/** Seconds a refused client should wait: another replica is already up, or this one's successor soon. */
const RETRY_AFTER_SECONDS = 1

export default fp(async (app) => {
  const inFlight = new Set<AbortController>()
  let hurried = false
  const closing = new AbortController()
  const refusal = (): Error => fusionError('FUSION_SHUTTING_DOWN', { retryAfterSeconds: RETRY_AFTER_SECONDS })

  app.decorateRequest('stopping', null)
  app.decorate('shutdown', {
    hurry () {
      hurried = true
      const count = inFlight.size
      for (const controller of inFlight) controller.abort(refusal())
      inFlight.clear()
      return count
    },
    get hurried () { return hurried },
    closing: closing.signal
  })

  // Once closing, every answer closes its connection: a kept-alive one left idle after its last answer would hold the
  // exit back for the keep-alive timeout (server.close() reaps only the connections idle when it is called).
  app.addHook('preClose', async () => { closing.abort() })
  app.addHook('onSend', async (_request, reply, payload) => {
    if (closing.signal.aborted) reply.header('connection', 'close')
    return payload
  })

  app.addHook('onRequest', async (request, reply) => {
    if (closing.signal.aborted) throw refusal()
    const controller = new AbortController()
    request.stopping = controller.signal
    if (hurried) {
      controller.abort(refusal())
      return
    }
    inFlight.add(controller)
    reply.raw.once('close', () => { inFlight.delete(controller) })
  })
}, { name: 'shutdown' })
