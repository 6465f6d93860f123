import { fusionError } from '../errors.js'
import type { PreparedFusion } from '../fusion/fusion.js'
import {
  admit, drainRate, etaSeconds, RATE_WINDOW_SECONDS, newJobId, sendJob, takePace,
  type JobLine, type JobRequest, type JobView, type LineParts, type Pace
} from './job-line.js'

interface Entry {
  view: JobView
  owner: string | undefined
  clientId: string
  /** Dropped as soon as the job ends. */
  prepared: PreparedFusion | undefined
  etaSeconds: number
  started: boolean
}

/**
 * The wait line in this process's memory, for a single replica without Redis:
 * the same contract as the Redis line, but a restart loses every job, queued or
 * finished, and replicas do not share it.
 */
export function createMemoryLine (parts: LineParts): JobLine {
  const { limits } = parts
  const jobs = new Map<string, Entry>()
  const waiting: string[] = []
  /** When calls were sent, oldest first. */
  const sends: number[] = []
  let running = 0
  let pausedUntil = 0
  let closing = false
  const idle: Array<() => void> = []
  // Jobs are taken at the budget's pace: `taking.max` per window.
  const taking = takePace(limits.budgetQps)
  let windowStart = 0
  let takenInWindow = 0
  let nextPump: NodeJS.Timeout | undefined

  const currentPace = (): Pace => {
    const since = Date.now() - RATE_WINDOW_SECONDS * 1000
    while (sends.length > 0 && sends[0]! < since) sends.shift()
    return drainRate(sends.length, ((sends.at(-1) ?? 0) - (sends[0] ?? 0)) / 1000, limits.budgetQps, pausedUntil - Date.now())
  }
  /** Each client's jobs not finished yet (QUEUE_MAX_JOBS_PER_CLIENT). */
  const pendingByClient = new Map<string, number>()
  const countPending = (clientId: string, change: 1 | -1): void => {
    const count = (pendingByClient.get(clientId) ?? 0) + change
    if (count > 0) pendingByClient.set(clientId, count)
    else pendingByClient.delete(clientId)
  }

  function finish (entry: Entry, view: Partial<JobView>): void {
    Object.assign(entry.view, view, { finishedAt: Date.now() })
    countPending(entry.clientId, -1)
    entry.prepared = undefined
    delete entry.view.position
    delete entry.view.etaSeconds
    setTimeout(() => { jobs.delete(entry.view.jobId) }, limits.resultTtlSeconds * 1000).unref()
  }

  function pump (): void {
    while (!closing && running < limits.workers && waiting.length > 0) {
      const now = Date.now()
      if (now < pausedUntil) {
        pumpAgainIn(pausedUntil - now)
        break
      }
      if (now - windowStart >= taking.durationMs) {
        windowStart = now
        takenInWindow = 0
      }
      if (takenInWindow >= taking.max) {
        pumpAgainIn(windowStart + taking.durationMs - now)
        break
      }
      takenInWindow++
      const entry = jobs.get(waiting.shift()!)!
      void run(entry)
    }
    if (running === 0) idle.splice(0).forEach((resolve) => { resolve() })
  }

  /** One timer at a time; one that fires early (timers and Date.now() keep different clocks) only sets the next. */
  function pumpAgainIn (ms: number): void {
    nextPump ??= setTimeout(() => { nextPump = undefined; pump() }, ms).unref()
  }

  async function run (entry: Entry): Promise<void> {
    running++
    entry.view.status = 'running'
    entry.view.startedAt = Date.now()
    if (!entry.started) parts.onStarted?.((Date.now() - entry.view.createdAt) / 1000, entry.etaSeconds)
    entry.started = true
    try {
      const sent = async (): Promise<void> => { sends.push(Date.now()) }
      const outcome = await sendJob(parts.fusion, entry.prepared!, entry.view.requestId, parts.log, limits.callDeadlineMs, sent)
      if ('requeue' in outcome) {
        parts.onRequeued?.(outcome.cause)
        // Back to the head of the line; after frequency control, nobody is sent before the pause ends.
        entry.view.status = 'queued'
        delete entry.view.startedAt
        waiting.unshift(entry.view.jobId)
        if (outcome.pauseMs > 0) pausedUntil = Math.max(pausedUntil, Date.now() + outcome.pauseMs)
        return
      }
      finish(entry, { status: outcome.ok ? 'succeeded' : 'failed', outcome })
      parts.onOutcome?.(outcome.ok ? 'succeeded' : outcome.error.code, Date.now() - entry.view.createdAt)
    } finally {
      running--
      pump()
    }
  }

  function visible (jobId: string, owner: string | undefined): Entry | undefined {
    const entry = jobs.get(jobId)
    return entry === undefined || (entry.owner !== undefined && entry.owner !== owner) ? undefined : entry
  }

  function snapshot (entry: Entry): JobView {
    const view = { ...entry.view }
    if (view.status === 'queued') {
      view.position = waiting.indexOf(view.jobId) + 1
      view.etaSeconds = etaSeconds(view.position, currentPace())
    }
    return view
  }

  return {
    async submit (request: JobRequest) {
      if (closing) throw fusionError('FUSION_QUEUE_UNAVAILABLE')
      const pace = currentPace()
      const position = admit({ waiting: waiting.length, clientJobs: pendingByClient.get(request.clientId) ?? 0, pace, limits })
      const jobId = newJobId()
      const etaAtSubmit = etaSeconds(position, pace)
      jobs.set(jobId, {
        etaSeconds: etaAtSubmit,
        started: false,
        view: { jobId, status: 'queued', createdAt: Date.now(), answer: request.answer, requestId: request.requestId },
        owner: request.owner,
        clientId: request.clientId,
        prepared: request.prepared
      })
      countPending(request.clientId, 1)
      waiting.push(jobId)
      pump()
      return { jobId, position, etaSeconds: etaAtSubmit }
    },
    async view (jobId, owner) {
      const entry = visible(jobId, owner)
      return entry === undefined ? undefined : snapshot(entry)
    },
    async cancel (jobId, owner) {
      const entry = visible(jobId, owner)
      if (entry === undefined) return undefined
      if (entry.view.status === 'running') throw fusionError('FUSION_JOB_RUNNING')
      if (entry.view.status === 'queued') {
        waiting.splice(waiting.indexOf(jobId), 1)
        finish(entry, { status: 'canceled' })
        parts.onOutcome?.('canceled', Date.now() - entry.view.createdAt)
        return snapshot(entry)
      }
      jobs.delete(jobId)
      return snapshot(entry)
    },
    length: async () => waiting.length,
    mode: () => 'local',
    async close () {
      closing = true
      clearTimeout(nextPump)
      if (running > 0) await new Promise<void>((resolve) => { idle.push(resolve) })
    }
  }
}
