import fp from 'fastify-plugin'
import type { ConfigSlice } from '../config/load.js'
import type { JobLine, LineParts } from '../jobs/job-line.js'
import { createMemoryLine } from '../jobs/memory-line.js'

declare module 'fastify' {
  interface FastifyInstance {
    jobLine: JobLine
  }
}

/** The settings this plugin reads. */
export const jobLineSettings = [
  'QUEUE_REDIS_URL', 'REDIS_URL', 'REDIS_KEY_PREFIX', 'QUEUE_MAX_JOBS', 'QUEUE_MAX_WAIT_SECONDS', 'QUEUE_MAX_JOBS_PER_CLIENT',
  'QUEUE_RESULT_TTL_SECONDS', 'QUEUE_LOCK_SECONDS', 'QUEUE_WORKERS', 'UPSTREAM_QPS', 'REQUEST_DEADLINE_MS'
] as const

/**
 * The wait line of asynchronous fusions: BullMQ on QUEUE_REDIS_URL (or
 * REDIS_URL), shared by every replica; without either, a line in memory.
 * Each replica runs workers that send the jobs upstream through the same
 * fusion module and chain as a request; closing stops them taking jobs and
 * waits for the ones they hold.
 */
export default fp<{ config: ConfigSlice<typeof jobLineSettings[number]> }>(async (app, { config }) => {
  const parts: LineParts = {
    fusion: app.fusion,
    log: app.log.child({ component: 'job-line' }),
    limits: {
      maxJobs: config.QUEUE_MAX_JOBS,
      maxWaitSeconds: config.QUEUE_MAX_WAIT_SECONDS,
      maxJobsPerClient: config.QUEUE_MAX_JOBS_PER_CLIENT,
      resultTtlSeconds: config.QUEUE_RESULT_TTL_SECONDS,
      workers: config.QUEUE_WORKERS,
      budgetQps: config.UPSTREAM_QPS,
      callDeadlineMs: config.REQUEST_DEADLINE_MS
    },
    onOutcome: (outcome, waitedMs) => {
      app.metrics.jobs.inc({ outcome })
      app.metrics.jobWait.observe(waitedMs / 1000)
    },
    onInterrupted: () => { app.metrics.jobsInterrupted.inc() },
    onRequeued: (cause) => { app.metrics.jobsRequeued.inc({ cause }) },
    onStarted: (waitedSeconds, etaSeconds) => { app.metrics.jobEtaError.observe(waitedSeconds - etaSeconds) }
  }
  const url = config.QUEUE_REDIS_URL ?? config.REDIS_URL
  if (url === undefined) {
    const line = createMemoryLine(parts)
    app.decorate('jobLine', line)
    app.addHook('onClose', async () => { await line.close() })
    return
  }
  // Loaded only for a Redis line: BullMQ and ioredis are about 6.5 MB of heap an instance without Redis never uses.
  const [{ Redis }, { createRedisLine }] = await Promise.all([import('ioredis'), import('../jobs/redis-line.js')])
  // Requests fail fast on a Redis that is down; the worker's blocking reads wait for it to come back.
  const redis = new Redis(url, {
    connectTimeout: 500,
    commandTimeout: 2_000,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    // A command cut off by a lost connection fails rather than running again later, out of order with what came after
    // it (a job's "sent" marker, written after the line gave the job up).
    autoResendUnfulfilledCommands: false,
    retryStrategy: (attempt) => Math.min(attempt * 100, 1_000),
    lazyConnect: true
  })
  const workerRedis = new Redis(url, { maxRetriesPerRequest: null, retryStrategy: (attempt) => Math.min(attempt * 100, 1_000) })
  redis.on('error', () => {})
  workerRedis.on('error', () => {})
  await redis.connect().catch(() => {})
  const line = createRedisLine({
    ...parts,
    redis,
    workerRedis,
    keyPrefix: config.REDIS_KEY_PREFIX,
    stalledMs: config.QUEUE_LOCK_SECONDS * 1000
  })
  app.decorate('jobLine', line)
  app.metrics.watchRedis('queue', () => redis.status === 'ready')
  const sampler = setInterval(() => {
    line.length().then((length) => { app.metrics.jobLineLength.set(length) }, () => {})
  }, 5_000).unref()
  app.addHook('onClose', async () => {
    clearInterval(sampler)
    await line.close()
    redis.disconnect()
    workerRedis.disconnect()
  })
}, { name: 'job-line', dependencies: ['fusion', 'metrics'] })
