import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { Queue, Worker, type Job } from 'bullmq'
import type { ClientContext, Redis, Result } from 'ioredis'
import { errorAnswer, fusionError, isFusionError, messageOf } from '../errors.js'
import type { PreparedFusion } from '../fusion/fusion.js'
import {
  admit, drainRate, etaSeconds, interrupted, JOB_IDS_IN_TEXT, LineStoreFailure, newJobId, RATE_WINDOW_SECONDS, sendJob,
  STORE_FAILURE_REQUEUE, takePace,
  type Answer, type JobLine, type JobOutcome, type Pace, type JobRequest, type JobView, type LineParts, type Requeue
} from './job-line.js'

/** What a BullMQ job carries: everything but the photo, which is stored as bytes beside it. */
interface JobData extends Omit<PreparedFusion, 'jpeg'> {
  answer: Answer
  requestId: string
  owner?: string
  clientId: string
  /** The ETA given at submission. */
  etaSeconds: number
}

export interface RedisLineOptions extends LineParts {
  /** For the queue and its keys: fails fast, so a request never waits on a Redis that is down. */
  redis: Redis
  /** For the worker's blocking reads (BullMQ wants `maxRetriesPerRequest: null` there). */
  workerRedis: Redis
  keyPrefix: string
  /** How long a running job's lock lasts: a replica that dies holding a job gives it up after this. */
  stalledMs: number
}

/**
 * Takes one of a client's places in the line, in one step, so that submissions arriving together cannot all see a
 * free place. KEYS: the client's set of jobs (scored by expiry). ARGV: now, the new job's expiry, its id, the most
 * places, the set's lifetime in ms. Returns the jobs the client held before; the place is taken only below the most.
 */
const RESERVE_SCRIPT = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[4]) then return held end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return held
`

/** Removes a job's "sent" marker only if it holds this run's token: a late DEL never takes another run's marker. */
const UNMARK_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`

declare module 'ioredis' {
  interface RedisCommander<Context extends ClientContext = { type: 'default' }> {
    fusionJobsReserve: (...args: Array<string | number>) => Result<number, Context>
    fusionJobsUnmark: (key: string, token: string) => Result<number, Context>
  }
}

/** The BullMQ queue, under REDIS_KEY_PREFIX (an operator may pause it with BullMQ's own tools; the bench does). */
export const QUEUE_NAME = 'fusion'
/** How old a read of the wait list may be for a queued job's place. */
const WAITING_READ_MS = 1_000
/** How long closing waits for BullMQ when the line's Redis is unreachable. */
const CLOSE_UNREACHABLE_MS = 1_000
/**
 * The share of the line's Redis `maxmemory` new jobs may fill. The rest is room for what the jobs already in still
 * write (their results, the sent markers): with `noeviction`, a Redis past its limit refuses writes, and a job whose
 * result cannot be stored is lost after its call was billed.
 */
const MEMORY_FILL_LIMIT = 0.9
/** The least Retry-After of a refusal for memory. */
const MEMORY_RETRY_AFTER_SECONDS = 10
export const queuePrefix = (keyPrefix: string): string => `${keyPrefix}bull`

/** An error's message for a log line, without the job ids BullMQ writes into its own. */
function reasonOf (error: unknown): string {
  return messageOf(error).replace(JOB_IDS_IN_TEXT, '[job]')
}
/**
 * The wait line on Redis with BullMQ, shared by every replica: first in, first
 * out; a job whose replica dies is taken up by another once its lock expires.
 *
 * Around BullMQ, in the line's own keys: the photo as bytes (BullMQ's job JSON
 * would inflate it), a "sent" marker set before the upstream call (a job found
 * with it after a crash may have been billed, so it fails with
 * FUSION_JOB_INTERRUPTED rather than being sent again), each client's jobs, the
 * jobs sent lately (the drain rate), and the canceled jobs' last views.
 */
export function createRedisLine (options: RedisLineOptions): JobLine {
  const { redis, limits, keyPrefix } = options
  redis.defineCommand('fusionJobsReserve', { lua: RESERVE_SCRIPT, numberOfKeys: 1 })
  redis.defineCommand('fusionJobsUnmark', { lua: UNMARK_SCRIPT, numberOfKeys: 1 })
  const prefix = `${keyPrefix}jobs:`
  const key = {
    photo: (jobId: string) => `${prefix}photo:${jobId}`,
    sent: (jobId: string) => `${prefix}sent:${jobId}`,
    client: (clientId: string) => `${prefix}client:${clientId}`,
    canceled: (jobId: string) => `${prefix}canceled:${jobId}`,
    sends: `${prefix}sends`
  }
  // A photo outlives the longest wait the line admits, with room for a crashed replica's job to be taken up.
  const photoTtlMs = (limits.maxWaitSeconds * 2 + 60) * 1000 + options.stalledMs * 2
  const resultTtlMs = limits.resultTtlSeconds * 1000

  const queue = new Queue<JobData, JobOutcome>(QUEUE_NAME, {
    connection: redis,
    prefix: queuePrefix(keyPrefix),
    skipWaitingForReady: true,
    defaultJobOptions: {
      attempts: 1,
      removeOnComplete: { age: limits.resultTtlSeconds },
      removeOnFail: { age: limits.resultTtlSeconds }
    }
  })
  const waitKey = queue.keys.wait!
  const limiterKey = queue.keys.limiter!

  async function currentPace (): Promise<Pace> {
    const now = Date.now()
    const [, [, count], [, first], [, last], [, taken], [, leftMs]] = await redis.multi()
      .zremrangebyscore(key.sends, '-inf', now - RATE_WINDOW_SECONDS * 1000)
      .zcard(key.sends)
      .zrange(key.sends, '0', '0', 'WITHSCORES')
      .zrange(key.sends, '-1', '-1', 'WITHSCORES')
      .get(limiterKey)
      .pttl(limiterKey)
      .exec() as [
        [unknown, unknown], [unknown, number], [unknown, string[]], [unknown, string[]], [unknown, string | null], [unknown, number]
      ]
    // BullMQ's limiter, read as BullMQ reads it: at its count, no job is taken until the key expires (queue.rateLimit
    // sets it so for a pause).
    const pausedMs = Number(taken ?? 0) >= taking.max && leftMs > 0 ? leftMs : 0
    return drainRate(count, (Number(last[1] ?? 0) - Number(first[1] ?? 0)) / 1000, limits.budgetQps, pausedMs)
  }

  async function position (jobId: string): Promise<number | undefined> {
    const [index, length] = await Promise.all([redis.lpos(waitKey, jobId), redis.llen(waitKey)])
    // Jobs enter on the left and leave on the right: the rightmost is next.
    return index === null ? undefined : length - index
  }

  /**
   * The wait list as this replica last read it, at most a second ago: every view of a queued job within that second
   * shares one read. Asked of each view, BullMQ's state and LPOS walk the list, and ten thousand clients following
   * their jobs (`/events` looks once a second) would cost Redis more than a second of work every second.
   */
  let lastRead: { at: number, places: Promise<Map<string, number>> } | undefined
  async function placesInLine (): Promise<Map<string, number>> {
    if (lastRead !== undefined && Date.now() - lastRead.at < WAITING_READ_MS) return await lastRead.places
    const read = {
      at: Date.now(),
      places: redis.lrange(waitKey, 0, -1).then((ids) => new Map(ids.map((id, index) => [id, ids.length - index])))
    }
    // A failed read is not kept: the next view reads again.
    read.places.catch(() => { if (lastRead === read) lastRead = undefined })
    lastRead = read
    return await read.places
  }

  async function processJob (job: Job<JobData, JobOutcome>): Promise<JobOutcome> {
    const jobId = job.id!
    const { answer: _answer, requestId, owner: _owner, clientId, etaSeconds: eta, ...fusion } = job.data
    const log = options.log
    if (job.attemptsStarted <= 1) options.onStarted?.((Date.now() - job.timestamp) / 1000, eta)
    let jpeg: Buffer | null
    let sentBefore: boolean
    try {
      jpeg = await redis.getBuffer(key.photo(jobId))
      sentBefore = await redis.exists(key.sent(jobId)) === 1
    } catch (error) {
      storeFailed(error)
      return await backInLine(STORE_FAILURE_REQUEUE)
    }
    // A job found with the "sent" marker was taken up after a crash once its call may have gone out: not sent again.
    if (jpeg === null || sentBefore) {
      options.onInterrupted?.()
      return await ended(job, interrupted(requestId), clientId)
    }
    // Set just before each attempt goes out (after its budget slot): a crash before it leaves the job safe to send.
    // It holds this run's token, so that only this run takes it back. The same moment measures the drain rate.
    const token = randomUUID()
    const unmark = async (): Promise<void> => { await redis.fusionJobsUnmark(key.sent(jobId), token).catch(() => {}) }
    let marked = false
    const markSent = async (): Promise<void> => {
      try {
        await redis.set(key.sent(jobId), token, 'PX', photoTtlMs)
      } catch (error) {
        // Not sent. A stalled Redis may still run the timed-out SET: the unmarking behind it on the same connection
        // undoes it.
        void unmark()
        storeFailed(error)
        throw new LineStoreFailure(error)
      }
      marked = true
      redis.zadd(key.sends, Date.now(), jobId).catch(() => {})
    }
    const outcome = await sendJob(options.fusion, { ...fusion, jpeg }, requestId, log, limits.callDeadlineMs, markSent)
    if ('requeue' in outcome) {
      // Not billed: the marker this run set goes, or the job would be taken for one whose call may have gone out.
      if (marked) await unmark()
      return await backInLine(outcome)
    }
    return await ended(job, outcome, clientId)
  }

  /**
   * Puts a job that was not billed back at the head of the line, and pauses the line (a pause set by queue.rateLimit
   * holds every replica's workers) or this replica's workers alone. Its Redis failing here fails no job: BullMQ moves
   * the job back once its Redis answers.
   */
  async function backInLine (requeue: Requeue): Promise<never> {
    options.onRequeued?.(requeue.cause)
    if (requeue.pauseMs > 0 && requeue.thisReplica) pauseHere(requeue.pauseMs)
    else if (requeue.pauseMs > 0) await queue.rateLimit(requeue.pauseMs).catch(() => {})
    throw Worker.RateLimitError()
  }

  /** Until when this replica's workers take no job, and the one timer that resumes them. */
  let pausedHereUntil = 0
  let resumeTimer: NodeJS.Timeout | undefined
  let closing = false
  function pauseHere (pauseMs: number): void {
    pausedHereUntil = Math.max(pausedHereUntil, Date.now() + pauseMs)
    // Not waiting for the running jobs, this one among them.
    void worker.pause(true)
    clearTimeout(resumeTimer)
    resumeTimer = setTimeout(() => { if (!closing) void worker.resume() }, pausedHereUntil - Date.now())
    resumeTimer.unref()
  }

  function storeFailed (error: unknown): void {
    options.log.warn({ reason: reasonOf(error) }, 'job line: its Redis failed before a call went out; the job waits in the line again')
  }

  async function ended (job: Job<JobData, JobOutcome>, outcome: JobOutcome, clientId: string): Promise<JobOutcome> {
    // The outcome stands whether the cleanup goes through or not (a Redis stalling past the command timeout): what it
    // removes expires on its own, the client's place with its photo.
    try {
      await redis.multi().del(key.photo(job.id!), key.sent(job.id!)).zrem(key.client(clientId), job.id!).exec()
    } catch (error) {
      options.log.warn({ reason: reasonOf(error) },
        'job line: the cleanup after a job failed; its photo and its client\'s place expire on their own')
    }
    options.onOutcome?.(outcome.ok ? 'succeeded' : outcome.error.code, Date.now() - job.timestamp)
    return outcome
  }

  const taking = takePace(limits.budgetQps)
  const worker = new Worker<JobData, JobOutcome>(QUEUE_NAME, processJob, {
    connection: options.workerRedis,
    prefix: queuePrefix(keyPrefix),
    concurrency: limits.workers,
    // Jobs are taken at the budget's pace, counted in Redis for every replica (with a limiter, a pause set by
    // queue.rateLimit holds every replica's workers, not only this one's).
    limiter: { max: taking.max, duration: taking.durationMs },
    lockDuration: options.stalledMs,
    stalledInterval: Math.max(1_000, Math.floor(options.stalledMs / 2)),
    // A stalled job goes back to the line once; the "sent" marker decides whether it is sent again.
    maxStalledCount: 1,
    // After an error of its Redis, BullMQ tries again this much later; by default 15 s, which closing cannot always
    // cut short (its delay is abortable only once the worker was rate-limited).
    runRetryDelay: 1_000
  })
  // One line per outage is the Redis plugin's: here, only what is not a lost connection.
  worker.on('error', (error) => {
    if (redis.status === 'ready') options.log.warn({ queue: { error: reasonOf(error) } }, 'job worker: redis error')
  })
  // The processor answers every fusion error itself: a job BullMQ fails is the line's own failure (its Redis, mostly).
  worker.on('failed', (_job, error) => {
    options.log.error({ reason: reasonOf(error) }, 'job failed in the line: its view says FUSION_INTERNAL_ERROR')
  })
  queue.on('error', () => {})

  /** The job as it stands; `shared`: a queued job's place may come from the line as read up to a second ago. */
  async function view (job: Job<JobData, JobOutcome>, shared = true): Promise<JobView> {
    const base = { jobId: job.id!, createdAt: job.timestamp, answer: job.data.answer, requestId: job.data.requestId }
    const queued = async (place: number): Promise<JobView> =>
      ({ ...base, status: 'queued', position: place, etaSeconds: etaSeconds(place, await currentPace()) })
    // In the line when it was last read (a job queued since, or taken, or done, is asked of BullMQ).
    const listed = shared && job.finishedOn === undefined ? (await placesInLine()).get(job.id!) : undefined
    if (listed !== undefined) return await queued(listed)
    const state = await job.getState()
    // BullMQ sets processedOn each time a worker takes the job (again after a pause or a crash): the last time counts.
    const started = job.processedOn !== undefined ? { startedAt: job.processedOn } : {}
    if (state === 'completed') {
      const outcome = job.returnvalue
      return { ...base, ...started, status: outcome.ok ? 'succeeded' : 'failed', finishedAt: job.finishedOn ?? Date.now(), outcome }
    }
    if (state === 'failed') {
      // The processor answers every fusion error itself: a failed BullMQ job is our own fault.
      const outcome = { ok: false as const, error: errorAnswer(fusionError('FUSION_INTERNAL_ERROR'), job.data.requestId) }
      return { ...base, ...started, status: 'failed', finishedAt: job.finishedOn ?? Date.now(), outcome }
    }
    if (state === 'active') return { ...base, ...started, status: 'running' }
    const place = await position(job.id!)
    return place === undefined ? { ...base, status: 'queued' } : await queued(place)
  }

  async function find (jobId: string, owner: string | undefined): Promise<Job<JobData, JobOutcome> | undefined> {
    const job = await queue.getJob(jobId)
    if (job === undefined || (job.data.owner !== undefined && job.data.owner !== owner)) return undefined
    return job
  }

  async function canceledView (jobId: string, owner: string | undefined): Promise<JobView | undefined> {
    const stored = await redis.get(key.canceled(jobId))
    if (stored === null) return undefined
    const { owner: canceledBy, view: canceled } = JSON.parse(stored) as { owner?: string, view: JobView }
    return canceledBy !== undefined && canceledBy !== owner ? undefined : canceled
  }

  /** Memory used and allowed (0: no limit) on the line's Redis; unknown (both 0) where INFO is not allowed. */
  async function memoryUse (): Promise<{ used: number, max: number }> {
    const info = await redis.info('memory').catch(() => '')
    const field = (name: string): number => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(info)?.[1] ?? 0)
    return { used: field('used_memory'), max: field('maxmemory') }
  }

  /** Refuses a job whose photo would fill the line's Redis past MEMORY_FILL_LIMIT of its maxmemory. */
  async function assertMemoryRoom (photoBytes: number, waiting: number, pace: Pace): Promise<void> {
    const { used, max } = await memoryUse()
    if (max === 0 || used + photoBytes <= max * MEMORY_FILL_LIMIT) return
    // Memory comes back as queued jobs finish and their photos go (a tenth of the line drained gives some back), or as
    // stored results expire: not within a second, so each retry's upload and resize is not wasted as often.
    throw fusionError('FUSION_QUEUE_FULL', {
      cause: new Error(`the line's Redis is past ${MEMORY_FILL_LIMIT * 100} % of its maxmemory`),
      retryAfterSeconds: Math.max(MEMORY_RETRY_AFTER_SECONDS, etaSeconds(Math.ceil(waiting / 10), pace))
    })
  }

  /** Every Redis failure on the way in is one answer: the line is unavailable. */
  async function reachable<T> (work: () => Promise<T>): Promise<T> {
    try {
      return await work()
    } catch (error) {
      if (isFusionError(error)) throw error
      throw fusionError('FUSION_QUEUE_UNAVAILABLE', { cause: error })
    }
  }

  return {
    submit: async (request: JobRequest) => await reachable(async () => {
      const now = Date.now()
      const clientKey = key.client(request.clientId)
      const jobId = newJobId()
      const clientJobs = await redis.fusionJobsReserve(clientKey, now, now + photoTtlMs, jobId, limits.maxJobsPerClient, photoTtlMs)
      const reserved = clientJobs < limits.maxJobsPerClient
      try {
        const linePace = await currentPace()
        const waiting = await redis.llen(waitKey)
        const position = admit({ waiting, clientJobs, pace: linePace, limits })
        const eta = etaSeconds(position, linePace)
        const { jpeg, ...fusion } = request.prepared
        await assertMemoryRoom(jpeg.length, waiting, linePace)
        await redis.set(key.photo(jobId), jpeg, 'PX', photoTtlMs)
        const data: JobData = {
          ...fusion,
          answer: request.answer,
          requestId: request.requestId,
          clientId: request.clientId,
          etaSeconds: eta,
          ...(request.owner !== undefined ? { owner: request.owner } : {})
        }
        await queue.add(QUEUE_NAME, data, { jobId })
        return { jobId, position, etaSeconds: eta }
      } catch (error) {
        // Not queued: the place goes back (and the photo, if it was stored).
        if (reserved) await redis.multi().zrem(clientKey, jobId).del(key.photo(jobId)).exec().catch(() => {})
        throw error
      }
    }),
    view: async (jobId, owner) => await reachable(async () => {
      const job = await find(jobId, owner)
      return job === undefined ? await canceledView(jobId, owner) : await view(job)
    }),
    cancel: async (jobId, owner) => await reachable(async () => {
      const job = await find(jobId, owner)
      if (job === undefined) {
        const canceled = await canceledView(jobId, owner)
        if (canceled !== undefined) await redis.del(key.canceled(jobId))
        return canceled
      }
      // Asked of BullMQ, not of the shared read: a job taken since is running, and one that ends meanwhile is not canceled.
      const current = await view(job, false)
      if (current.status === 'running') throw fusionError('FUSION_JOB_RUNNING')
      try {
        // BullMQ refuses to remove a job a worker has locked: it started meanwhile.
        await job.remove()
      } catch {
        throw fusionError('FUSION_JOB_RUNNING')
      }
      if (current.status !== 'queued') return current
      const canceled: JobView = { ...current, status: 'canceled', finishedAt: Date.now() }
      delete canceled.position
      delete canceled.etaSeconds
      await redis.multi()
        .del(key.photo(jobId))
        .zrem(key.client(job.data.clientId), jobId)
        .set(key.canceled(jobId), JSON.stringify({ owner: job.data.owner, view: canceled }), 'PX', resultTtlMs)
        .exec()
      options.onOutcome?.('canceled', Date.now() - job.timestamp)
      return canceled
    }),
    length: async () => await redis.llen(waitKey),
    mode: () => redis.status === 'ready' ? 'shared' : 'down',
    async close () {
      closing = true
      // With its Redis down nothing can be finished or handed back, and BullMQ's close would wait for it without end:
      // the running jobs' locks expire and another replica takes them up.
      const reachable = redis.status === 'ready'
      await Promise.all([worker.close(!reachable), queue.close()].map(async (closing) => {
        await (reachable ? closing : Promise.race([closing, sleep(CLOSE_UNREACHABLE_MS)]))
      }))
    }
  }
}
