import t from 'tap'
import { fusionError } from '../../src/errors.js'
import type { Fusion, PreparedFusion } from '../../src/fusion/fusion.js'
import {
  admit, drainRate, etaSeconds, JOB_ID_PATTERN, JOB_IDS_IN_TEXT, jobsWithin, newJobId, RATE_WINDOW_SECONDS, takePace, type LineLimits
} from '../../src/jobs/job-line.js'
import { createMemoryLine } from '../../src/jobs/memory-line.js'

const limits: LineLimits = {
  maxJobs: 100, maxWaitSeconds: 600, maxJobsPerClient: 100, resultTtlSeconds: 60, workers: 4, budgetQps: 50, callDeadlineMs: 5_000
}
const prepared: PreparedFusion = { projectId: '100307', modelId: 'qc_100307_152854_1', resultType: 'url', options: {}, jpeg: Buffer.from('jpeg') }
const log = { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} }

/** A fusion whose sends fail as `failures` says, in turn, then succeed; it records when each send was tried. */
function fakeFusion (failures: Array<() => Error>): { fusion: Fusion, tries: number[] } {
  const tries: number[] = []
  const fusion = {
    send: async (_prepared: PreparedFusion, context: { beforeSend?: () => Promise<void> }) => {
      tries.push(Date.now())
      const failure = failures.shift()
      if (failure !== undefined) throw failure()
      await context.beforeSend?.()
      return { result: { resultType: 'url', imageUrl: 'https://example.invalid/fused.jpg' } }
    }
  } as unknown as Fusion
  return { fusion, tries }
}

async function finished (line: ReturnType<typeof createMemoryLine>, jobId: string): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const view = await line.view(jobId, undefined)
    if (view?.finishedAt !== undefined) return view.finishedAt
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  throw new Error('the job did not finish')
}

t.test('jobs are taken at the budget\'s pace, in windows whose bursts stay within half a second of slots', async (t) => {
  for (const qps of [0.5, 1, 9, 18, 50, 1000]) {
    const { max, durationMs } = takePace(qps)
    t.ok(max / durationMs * 1000 <= qps, `${qps}/s: never faster than the budget`)
    t.ok(max / durationMs * 1000 >= qps * 0.99, `${qps}/s: within 1 % of it`)
    t.ok(max === 1 || 2 * max <= qps / 2, `${qps}/s: one job a window, or two windows' jobs within half a second of slots`)
  }
})

t.test('the drain rate is the pace of the calls sent, over the time they span', async (t) => {
  t.same(drainRate(4, 1, 18), { achieved: 18, budget: 18, pausedMs: 0 }, 'the budget until five calls tell')
  t.same(drainRate(19, 1, 18), { achieved: 18, budget: 18, pausedMs: 0 }, 'never more than the budget')
  t.same(drainRate(11, 2, 18), { achieved: 5, budget: 18, pausedMs: 0 }, 'ten intervals in two seconds')
  t.same(drainRate(6, 0, 18), { achieved: 18, budget: 18, pausedMs: 0 }, 'calls all at once tell nothing')
})

t.test('an ETA keeps the pace just achieved for the rate window, then the budget\'s', async (t) => {
  const atBudget = { achieved: 18, budget: 18, pausedMs: 0 }
  t.equal(etaSeconds(180, atBudget), 10)
  t.equal(etaSeconds(1800, atBudget), 100, 'at the budget throughout')
  const short = { achieved: 12, budget: 18, pausedMs: 0 }
  t.equal(etaSeconds(60, short), 5, 'within the window: the pace achieved')
  t.equal(etaSeconds(120, short), RATE_WINDOW_SECONDS, 'the window\'s last job')
  t.equal(etaSeconds(120 + 900, short), RATE_WINDOW_SECONDS + 50, 'past the window: the budget')
  const paused = { ...short, pausedMs: 30_000 }
  t.equal(etaSeconds(60, paused), 35, 'a paused line takes no job before its pause ends')
  for (const pace of [short, paused]) {
    for (const position of [1, 7, 119, 120, 121, 500, 5000]) {
      const eta = etaSeconds(position, pace)
      t.ok(jobsWithin(eta, pace) >= position && jobsWithin(eta - 1, pace) < position, `jobsWithin inverts etaSeconds at ${position}`)
    }
  }
})

t.test('admission refuses what the line cannot take within the longest wait, and says when to come back', async (t) => {
  const pace = { achieved: 12, budget: 18, pausedMs: 0 }
  const lineLimits = { ...limits, maxWaitSeconds: 60, maxJobs: 10_000, maxJobsPerClient: 5 }
  // 120 jobs in the window's 10 s, 18 a second for the 50 s after: 1,020 within a minute.
  t.equal(admit({ waiting: 1019, clientJobs: 0, pace, limits: lineLimits }), 1020)
  t.throws(() => admit({ waiting: 1020, clientJobs: 0, pace, limits: lineLimits }), { code: 'FUSION_QUEUE_FULL', retryAfterSeconds: 1 })
  t.throws(() => admit({ waiting: 1200, clientJobs: 0, pace, limits: lineLimits }), { code: 'FUSION_QUEUE_FULL', retryAfterSeconds: 14 }, '181 over: 120 in the window, 61 at 18 a second')
  t.throws(() => admit({ waiting: 0, clientJobs: 5, pace, limits: lineLimits }), { code: 'FUSION_TOO_MANY_JOBS' })
  const paused = { ...pace, pausedMs: 30_000 }
  // Paused for 30 s: 120 jobs in the window's 10 s after it, 18 a second for the 20 s left: 480 within the minute.
  t.equal(admit({ waiting: 479, clientJobs: 0, pace: paused, limits: lineLimits }), 480, 'a pause counts against the longest wait')
  t.throws(() => admit({ waiting: 480, clientJobs: 0, pace: paused, limits: lineLimits }), { code: 'FUSION_QUEUE_FULL' })
})

t.test('a refusal of the budget puts the job back without pausing the line', async (t) => {
  const { fusion, tries } = fakeFusion([() => fusionError('FUSION_UPSTREAM_BUSY', { retryAfterSeconds: 2 })])
  const line = createMemoryLine({ fusion, limits, log })
  t.teardown(async () => { await line.close() })
  const { jobId } = await line.submit({ prepared, answer: 'json', requestId: 'r1', owner: undefined, clientId: 'c' })
  await finished(line, jobId)
  t.equal(tries.length, 2)
  t.ok(tries[1]! - tries[0]! < 1_000, 'tried again well before the Retry-After of 2 s')
  t.equal((await line.view(jobId, undefined))?.status, 'succeeded')
})

t.test('frequency control puts the job back and pauses the line for its Retry-After', async (t) => {
  const { fusion, tries } = fakeFusion([() => fusionError('FUSION_RATE_LIMITED', { retryAfterSeconds: 1 })])
  const line = createMemoryLine({ fusion, limits, log })
  t.teardown(async () => { await line.close() })
  const { jobId } = await line.submit({ prepared, answer: 'json', requestId: 'r1', owner: undefined, clientId: 'c' })
  await finished(line, jobId)
  t.equal(tries.length, 2)
  t.ok(tries[1]! - tries[0]! >= 990, 'not before the pause ended')
})

t.test('the ETA follows the calls sent, not the jobs taken', async (t) => {
  // Sends that take 100 ms each, one worker: 10 a second, whatever the budget of 50.
  const fusion = {
    send: async (_prepared: PreparedFusion, context: { beforeSend?: () => Promise<void> }) => {
      await context.beforeSend?.()
      await new Promise((resolve) => setTimeout(resolve, 100))
      return { result: { resultType: 'url', imageUrl: 'https://example.invalid/fused.jpg' } }
    }
  } as unknown as Fusion
  const line = createMemoryLine({ fusion, limits: { ...limits, workers: 1 }, log })
  t.teardown(async () => { await line.close() })
  const submit = async (): Promise<{ jobId: string, etaSeconds: number }> =>
    await line.submit({ prepared, answer: 'json', requestId: 'r', owner: undefined, clientId: 'c' })
  for (let i = 0; i < 8; i++) await submit()
  await new Promise((resolve) => setTimeout(resolve, 700))
  const queued: Array<{ jobId: string, etaSeconds: number }> = []
  for (let i = 0; i < 20; i++) queued.push(await submit())
  const last = queued.at(-1)!
  const position = (await line.view(last.jobId, undefined))!.position!
  t.ok(last.etaSeconds >= Math.floor(position / 10) && last.etaSeconds <= Math.ceil(position / 10) + 1,
    `${position} jobs ahead at 10 a second: about ${Math.ceil(position / 10)} s (${last.etaSeconds})`)
})

t.test('job ids are found standing alone in a text, as BullMQ writes them into its messages', async (t) => {
  const jobId = newJobId()
  t.match(jobId, JOB_ID_PATTERN)
  const requestId = '2f1c1a8e-3b0e-4d5e-9a57-6a1d1f0c9b2e'
  t.equal(`Missing lock for job ${jobId}. moveToFinished; request ${requestId}`.replace(JOB_IDS_IN_TEXT, '[job]'),
    `Missing lock for job [job]. moveToFinished; request ${requestId}`, 'the id goes, a request id stays')
  t.equal(`bull:fusion:${jobId}:lock`.replace(JOB_IDS_IN_TEXT, '[job]'), 'bull:fusion:[job]:lock', 'inside a key too')
  t.equal(`x${jobId}`.replace(JOB_IDS_IN_TEXT, '[job]'), `x${jobId}`, 'not a part of a longer token')
})
