import type { ServerResponse } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import accepts from 'accepts'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { fusionError } from '../errors.js'
import { firstPollSeconds, JOB_ID_PATTERN, type JobView } from '../jobs/job-line.js'
import { jobRouteSchemas } from '../schemas.js'
import { jobOwner, sendPicture, successBody } from './answers.js'

interface JobParams { jobId: string }

/** An open event stream of a job: `stop` ends it, and the loop that feeds it. */
interface Following { stop: () => void }

/** A comment line at least this often keeps proxies from closing a quiet stream. */
const KEEP_ALIVE_MS = 15_000
/** A queued job's position is looked at once a second; a running job's end a little more often. */
const QUEUED_POLL_MS = 1_000
const RUNNING_POLL_MS = 250
/**
 * Event streams one job may have open on a replica. Each costs a connection and a look at the line a second: without
 * a bound, one client holding one queued job could open thousands. A new stream past it closes the oldest, most
 * likely a connection its client has already left (a phone that changed networks), so a reconnecting client is never
 * refused; its EventSource, if still there, reconnects.
 */
export const MAX_STREAMS_PER_JOB = 3
/**
 * A client may look at its jobs this many times as often as it may submit photos (RATE_LIMIT_MAX, or
 * RATE_LIMIT_API_KEY_MAX, per window): five jobs followed at their Retry-After of a second take half of it, while a
 * client polling in a loop is answered 429 before it costs the line a read.
 */
export const JOB_READS_PER_SUBMISSION = 10
const perClientLimits = { rateLimit: {}, rateLimitMultiple: JOB_READS_PER_SUBMISSION }

/** A job as `GET /fuse/jobs/{jobId}` shows it: `result` and `error` are the synchronous request's bodies. */
export function jobBody (view: JobView, request: FastifyRequest): object {
  const outcome = view.outcome
  return {
    jobId: view.jobId,
    status: view.status,
    ...(view.position !== undefined ? { position: view.position, etaSeconds: view.etaSeconds } : {}),
    createdAt: new Date(view.createdAt).toISOString(),
    ...(view.startedAt !== undefined ? { startedAt: new Date(view.startedAt).toISOString() } : {}),
    ...(view.finishedAt !== undefined ? { finishedAt: new Date(view.finishedAt).toISOString() } : {}),
    ...(outcome?.ok === true ? { result: successBody(request, view.requestId, outcome) } : {}),
    ...(outcome?.ok === false ? { error: outcome.error } : {})
  }
}

/**
 * The jobs of `Prefer: respond-async`: follow one (`GET`, or as a stream of
 * events), or cancel it (`DELETE`). A job created with a known API key is seen
 * only with that key; an unknown or expired id, or another key's, is 404.
 */
const fuseJobsRoute: FastifyPluginAsync = async (app) => {
  /** Each job's open event streams, the oldest first. */
  const streams = new Map<string, Following[]>()
  // Streams would hold the server open: they end when it closes (a client reconnects elsewhere with Last-Event-ID).
  app.addHook('preClose', async () => { for (const following of [...streams.values()].flat()) following.stop() })

  async function find (jobId: string, owner: string | undefined): Promise<JobView> {
    const view = JOB_ID_PATTERN.test(jobId) ? await app.jobLine.view(jobId, owner) : undefined
    if (view === undefined) throw fusionError('FUSION_JOB_NOT_FOUND')
    return view
  }

  app.get<{ Params: JobParams }>('/fuse/jobs/:jobId', { schema: jobRouteSchemas.get, config: perClientLimits }, async (request, reply) => {
    const view = await find(request.params.jobId, jobOwner(request))
    if (view.finishedAt === undefined) reply.header('retry-after', String(firstPollSeconds(view.etaSeconds)))
    const outcome = view.outcome
    const wantsImage = accepts(request.raw).type(['application/json', 'image/jpeg']) === 'image/jpeg'
    if (wantsImage && outcome?.ok === true && outcome.result.resultType === 'base64') {
      return await sendPicture(reply, outcome.result.imageBase64)
    }
    return jobBody(view, request)
  })

  app.delete<{ Params: JobParams }>('/fuse/jobs/:jobId', { schema: jobRouteSchemas.delete, config: perClientLimits }, async (request) => {
    const jobId = request.params.jobId
    const view = JOB_ID_PATTERN.test(jobId) ? await app.jobLine.cancel(jobId, jobOwner(request)) : undefined
    if (view === undefined) throw fusionError('FUSION_JOB_NOT_FOUND')
    return jobBody(view, request)
  })

  const events = { schema: jobRouteSchemas.events, config: perClientLimits }
  app.get<{ Params: JobParams }>('/fuse/jobs/:jobId/events', events, async (request, reply) => {
    const owner = jobOwner(request)
    let view = await find(request.params.jobId, owner)
    const jobId = view.jobId
    const stream = open(reply)
    const closed = new AbortController()
    const following: Following = { stop: () => { closed.abort(); stream.end() } }
    stream.once('close', () => { closed.abort() })
    // A client that left while its job was looked up closed the stream before anyone listened.
    if (stream.destroyed) closed.abort()
    const watching = streams.get(jobId) ?? []
    if (watching.length >= MAX_STREAMS_PER_JOB) watching.shift()?.stop()
    watching.push(following)
    streams.set(jobId, watching)
    let eventId = Number(request.headers['last-event-id']) || 0
    let lastSent = ''
    let lastWrite = Date.now()
    const write = (text: string): void => {
      // A stream stopped while its job was being looked at takes no more.
      if (stream.writableEnded) return
      stream.write(text)
      lastWrite = Date.now()
    }
    const send = (body: object): void => {
      eventId++
      write(`id: ${eventId}\ndata: ${JSON.stringify(body)}\n\n`)
    }
    try {
      // The current state at once, for a new stream and a reconnecting one alike.
      while (!closed.signal.aborted) {
        const shown = JSON.stringify({ status: view.status, position: view.position })
        if (shown !== lastSent) {
          send(jobBody(view, request))
          lastSent = shown
        }
        if (view.finishedAt !== undefined) break
        if (Date.now() - lastWrite >= KEEP_ALIVE_MS) write(': keep-alive\n\n')
        await sleep(view.status === 'running' ? RUNNING_POLL_MS : QUEUED_POLL_MS, undefined, { signal: closed.signal })
        const next = await app.jobLine.view(jobId, owner)
        if (next === undefined) break
        view = next
      }
    } catch (error) {
      if (!closed.signal.aborted) request.log.warn({ err: error }, 'job event stream ended early')
    } finally {
      const index = watching.indexOf(following)
      if (index !== -1) watching.splice(index, 1)
      if (watching.length === 0 && streams.get(jobId) === watching) streams.delete(jobId)
      stream.end()
    }
  })

  function open (reply: FastifyReply): ServerResponse {
    reply.hijack()
    const stream = reply.raw
    stream.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      // Proxies such as nginx would otherwise buffer the stream.
      'x-accel-buffering': 'no',
      'x-request-id': reply.request.id
    })
    return stream
  }
}

export default fuseJobsRoute
