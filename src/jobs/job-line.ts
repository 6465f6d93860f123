import { createHash, randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { errorAnswer, fusionError, isFusionError, messageOf, type ErrorAnswer } from '../errors.js'
import type { Fusion, FusionLogger, PreparedFusion } from '../fusion/fusion.js'
import type { FusionResult } from '../upstream/provider.js'

/**
 * The wait line of asynchronous fusions (`Prefer: respond-async`): a photo
 * checked and normalised at once becomes a job, sent upstream in its turn at
 * the pace of the shared budget. Two implementations share this contract:
 * BullMQ on Redis (every replica, nothing lost to a crash: redis-line.ts) and
 * a line in this process's memory (one replica, lost on restart: memory-line.ts).
 */
export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'canceled'

/** How the client asked for the picture: JSON (a URL or base64, as `rsp_img_type` says) or the image's bytes. */
export type Answer = 'json' | 'image'

export interface JobRequest {
  prepared: PreparedFusion
  answer: Answer
  /** The id of the request that created the job: the result's `requestId`, and the logs' link. */
  requestId: string
  /** Who may see the job: a hash of the known API key that created it; undefined for anyone holding its id. */
  owner: string | undefined
  /** Whose share of the line the job takes (QUEUE_MAX_JOBS_PER_CLIENT). */
  clientId: string
}

/** A finished job: what the synchronous request would have answered. */
export type JobOutcome =
  | { ok: true, result: FusionResult, expiresAt?: number }
  | { ok: false, error: ErrorAnswer }

export interface JobView {
  jobId: string
  status: JobStatus
  /** While queued: 1 is next. */
  position?: number
  etaSeconds?: number
  createdAt: number
  /**
   * When a worker last took the job (its status became `running`): the end of its wait in the line. Its upstream
   * call goes out at its budget slot, within UPSTREAM_BUDGET_WAIT_MS. Absent while queued.
   */
  startedAt?: number
  finishedAt?: number
  answer: Answer
  requestId: string
  outcome?: JobOutcome
}

export interface Submitted {
  jobId: string
  position: number
  etaSeconds: number
}

export interface JobLine {
  /** Queues the job, or refuses: 503 FUSION_QUEUE_FULL, 429 FUSION_TOO_MANY_JOBS, 503 FUSION_QUEUE_UNAVAILABLE. */
  submit: (request: JobRequest) => Promise<Submitted>
  /** undefined: unknown, expired, deleted, or another API key's. */
  view: (jobId: string, owner: string | undefined) => Promise<JobView | undefined>
  /** A queued job is canceled, a finished one deleted (its last view is returned); a running one: 409 FUSION_JOB_RUNNING. */
  cancel: (jobId: string, owner: string | undefined) => Promise<JobView | undefined>
  /** Jobs waiting (every replica's, with Redis). */
  length: () => Promise<number>
  /** `shared`: the queue's Redis is reachable; `down`: it is not; `local`: the line is in this process. */
  mode: () => 'shared' | 'local' | 'down'
  /** Stops taking jobs, and waits for the ones running here. */
  close: () => Promise<void>
}

/** The limits of the line (QUEUE_*), and the budget it drains at. */
export interface LineLimits {
  maxJobs: number
  maxWaitSeconds: number
  maxJobsPerClient: number
  resultTtlSeconds: number
  workers: number
  /** UPSTREAM_QPS: the drain rate until one is measured. */
  budgetQps: number
  /** How long one job's upstream call may take, budget wait included. */
  callDeadlineMs: number
}

/** The line's logger: a job that fails on our side is logged at error. */
export type LineLogger = FusionLogger & { error: (obj: object, msg: string) => void }

export interface LineParts {
  fusion: Fusion
  limits: LineLimits
  log: LineLogger
  onOutcome?: (outcome: string, waitedMs: number) => void
  onInterrupted?: () => void
  onRequeued?: (cause: RequeueCause) => void
  /** A job's turn came: how long it waited, against the ETA it was given. */
  onStarted?: (waitedSeconds: number, etaSeconds: number) => void
}

/** 128 random bits: a job id cannot be guessed. */
export function newJobId (): string {
  return randomBytes(16).toString('base64url')
}

const JOB_ID_CHARACTER = '[A-Za-z0-9_-]'
export const JOB_ID_PATTERN = new RegExp(`^${JOB_ID_CHARACTER}{22}$`)
/** Job ids standing on their own in a text (BullMQ writes them into its messages: "Missing lock for job …"). */
export const JOB_IDS_IN_TEXT = new RegExp(`(?<!${JOB_ID_CHARACTER})${JOB_ID_CHARACTER}{22}(?!${JOB_ID_CHARACTER})`, 'g')

/** What stands for a client or an API key in the line's keys and records: never the key itself. */
export function opaqueId (value: string): string {
  return createHash('sha256').update(value).digest('base64url').slice(0, 22)
}

/** Why a job that was not billed went back to the line (`fusion_jobs_requeued_total`). */
export type RequeueCause = 'frequency_control' | 'breaker_open' | 'budget_full' | 'line_store'

/**
 * A job that was not billed and goes back to the head of the line; no job is taken for `pauseMs`, by any replica,
 * or by this one alone (`thisReplica`) when the cause is its own: its circuit breaker is open, which says nothing of
 * the other replicas' way to the upstream. Frequency control is the account's quota, which every replica shares.
 */
export interface Requeue { requeue: true, cause: RequeueCause, pauseMs: number, thisReplica: boolean }

/** The line's own store failed before a job's call went out: nothing was sent, and the job waits its turn again. */
export class LineStoreFailure extends Error {
  constructor (cause: unknown) {
    super(`the job line's store failed before the call: ${messageOf(cause)}`, { cause })
  }
}

/**
 * A job whose line's store failed before its call goes back; the whole line pauses a second, as a Redis that stalls
 * or refuses writes is rarely back at once.
 */
export const STORE_FAILURE_REQUEUE: Requeue = { requeue: true, cause: 'line_store', pauseMs: 1_000, thisReplica: false }

/**
 * Sends one job's fusion. A call the upstream's frequency control refused, one
 * the budget could not place in time, or one the open circuit breaker kept from
 * going out, or one whose line could not record it as sent (LineStoreFailure),
 * was not billed: the job goes back to the head of the line instead of failing.
 * After frequency control the whole line pauses for the Retry-After; while
 * this replica's circuit is open, this replica does. A refusal of the budget's own needs no pause:
 * jobs are taken at the budget's pace (takePace), so the slots booked ahead run
 * out while the job waits its turn again; a pause of the Retry-After (whole
 * seconds) would leave the budget idle once they had.
 */
export async function sendJob (
  fusion: Fusion, prepared: PreparedFusion, requestId: string, log: LineLogger, callDeadlineMs: number,
  beforeSend?: () => Promise<void>
): Promise<JobOutcome | Requeue> {
  try {
    const fused = await fusion.send(prepared, {
      deadline: Date.now() + callDeadlineMs,
      signal: new AbortController().signal,
      finishUpstreamCall: true,
      log,
      ...(beforeSend !== undefined ? { beforeSend } : {})
    })
    return { ok: true, result: fused.result, ...(fused.expiresAt !== undefined ? { expiresAt: fused.expiresAt } : {}) }
  } catch (error) {
    const retryAfterMs = isFusionError(error) ? Math.max(1, error.retryAfterSeconds ?? 1) * 1000 : 0
    if (isFusionError(error) && error.code === 'FUSION_RATE_LIMITED') {
      return { requeue: true, cause: 'frequency_control', pauseMs: retryAfterMs, thisReplica: false }
    }
    if (isFusionError(error) && error.code === 'FUSION_UPSTREAM_UNAVAILABLE') {
      return { requeue: true, cause: 'breaker_open', pauseMs: retryAfterMs, thisReplica: true }
    }
    if (isFusionError(error) && error.code === 'FUSION_UPSTREAM_BUSY') {
      return { requeue: true, cause: 'budget_full', pauseMs: 0, thisReplica: false }
    }
    if (error instanceof LineStoreFailure) return STORE_FAILURE_REQUEUE
    const failure = isFusionError(error) ? error : fusionError('FUSION_INTERNAL_ERROR', { cause: error })
    if (!isFusionError(error)) log.error({ err: error }, 'job failed')
    return { ok: false, error: errorAnswer(failure, requestId) }
  }
}

/** The outcome a job gets when it cannot be sent again safely. */
export function interrupted (requestId: string): JobOutcome {
  return { ok: false, error: errorAnswer(fusionError('FUSION_JOB_INTERRUPTED'), requestId) }
}

/**
 * How fast workers take jobs, over every replica: `max` jobs per `durationMs`, the budget's own pace. Workers that
 * took jobs faster would be refused their slot (the budget lets a call wait UPSTREAM_BUDGET_WAIT_MS at most), and
 * each refusal put the job back and paused its replica's workers for the Retry-After, leaving the budget idle
 * meanwhile: with 3 × 16 workers on 18 calls a second, 540 queued jobs drained at 73–77 % of the budget (about 500
 * refusals), and at 95–96 % taken at this pace (none). A window of a quarter second's jobs keeps the burst at a
 * window's edge (twice `max`) within half a second of slots; rounded up, never over the budget.
 */
export function takePace (budgetQps: number): { max: number, durationMs: number } {
  const max = Math.max(1, Math.floor(budgetQps / 4))
  return { max, durationMs: Math.ceil(max * 1000 / budgetQps) }
}

/** How far back the drain rate is measured, and how long a shortfall it shows is expected to last. */
export const RATE_WINDOW_SECONDS = 10

/** The line's pace: the drain rate it achieved over the last RATE_WINDOW_SECONDS, and the budget's. */
export interface Pace {
  achieved: number
  budget: number
  /** How long the line takes no job (a pause after the upstream's frequency control), in ms; 0 when it takes them. */
  pausedMs: number
}

/**
 * Seconds until the job at `position` is taken: at the pace just achieved for
 * RATE_WINDOW_SECONDS, then at the budget's. A line falls short of its budget
 * when its replicas' CPUs are starved (receiving the very spike that fills it),
 * after frequency control, or while a lost replica's jobs wait for their lock
 * to expire; each passes. Measured in the spike benchmark, the first ETAs at the
 * pace of the last seconds alone overestimated the waits by a median 22 to 58 %.
 * A shortfall that lasts shows in every later view of the job, which is then
 * given at the pace achieved meanwhile. A line that is paused takes no job
 * before the pause ends: its rest comes first.
 */
export function etaSeconds (position: number, pace: Pace): number {
  const achieved = Math.max(pace.achieved, 0.01)
  const near = achieved * RATE_WINDOW_SECONDS
  const seconds = position <= near ? position / achieved : RATE_WINDOW_SECONDS + (position - near) / Math.max(pace.budget, 0.01)
  return Math.max(0, Math.ceil(pace.pausedMs / 1000 + seconds))
}

/** How many jobs the line takes within `seconds`: the inverse of `etaSeconds`. */
export function jobsWithin (seconds: number, pace: Pace): number {
  const taking = Math.max(0, seconds - pace.pausedMs / 1000)
  const near = Math.min(taking, RATE_WINDOW_SECONDS) * pace.achieved
  return Math.floor(near + Math.max(0, taking - RATE_WINDOW_SECONDS) * pace.budget)
}

/**
 * The drain rate the line actually achieves: the pace of the calls it sent over
 * the last RATE_WINDOW_SECONDS, between the first and the last of them (`spanSeconds`), so
 * that a line that began to drain a moment ago, or has just emptied, is not
 * taken for a slow one; the configured budget until enough were sent to tell.
 */
export function drainRate (sentInWindow: number, spanSeconds: number, budgetQps: number, pausedMs = 0): Pace {
  const achieved = sentInWindow >= 5 && spanSeconds > 0 ? Math.min((sentInWindow - 1) / spanSeconds, budgetQps) : budgetQps
  return { achieved, budget: budgetQps, pausedMs: Math.max(0, pausedMs) }
}

/** Refuses a job the line cannot take in time. */
export function admit (options: { waiting: number, clientJobs: number, pace: Pace, limits: LineLimits }): number {
  const { waiting, clientJobs, pace, limits } = options
  if (clientJobs >= limits.maxJobsPerClient) throw fusionError('FUSION_TOO_MANY_JOBS', { retryAfterSeconds: etaSeconds(1, pace) + 1 })
  const position = waiting + 1
  const eta = etaSeconds(position, pace)
  if (waiting >= limits.maxJobs || eta > limits.maxWaitSeconds) {
    const excess = Math.max(1, waiting + 1 - Math.min(limits.maxJobs, jobsWithin(limits.maxWaitSeconds, pace)))
    throw fusionError('FUSION_QUEUE_FULL', { retryAfterSeconds: etaSeconds(excess, pace) })
  }
  return position
}

/** How often a request waiting on its job (Prefer: wait) looks at it. */
const WAIT_POLL_MS = 250

/** The job once finished, or as it stands when `ms` have passed or `signal` aborted; undefined if it is gone. */
export async function waitForJob (
  line: JobLine, jobId: string, owner: string | undefined, ms: number, signal: AbortSignal
): Promise<JobView | undefined> {
  const until = Date.now() + ms
  for (;;) {
    const view = await line.view(jobId, owner)
    const left = until - Date.now()
    if (view === undefined || view.finishedAt !== undefined || left <= 0 || signal.aborted) return view
    await sleep(Math.min(WAIT_POLL_MS, left), undefined, { signal }).catch(() => {})
  }
}

/** When to look at a job again: about when its turn comes, but at least every 15 seconds. */
export function firstPollSeconds (eta: number | undefined): number {
  return Math.min(15, Math.max(1, eta ?? 1))
}
